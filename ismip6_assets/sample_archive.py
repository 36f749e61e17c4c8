"""A synthetic archive with the real archive's shape, made of real NetCDF files.

Covers the layouts the pipeline must handle: NetCDF4 chunked+zlib, NetCDF4 contiguous, NetCDF3
classic, 2-D+time fields on the 32 km EPSG:3031 grid, time-only scalars, irregular names
(``ILTS_PIK``, model token != model folder, UCIJPL's experiment-prefixed variables) and one
known-bad 0-byte file that the skip list names.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ismip6_assets.variables import variable_type

GRID_HALF_WIDTH = 3_040_000.0
UNITS = {"lithk": "m", "orog": "m", "topg": "m", "base": "m", "acabf": "kg m-2 s-1", "lim": "kg", "sftgif": "1", "xvelbase": "m s-1"}


@dataclass(frozen=True)
class SampleExperiment:
    institution: str
    model: str
    model_token: str
    experiment: str
    variables: tuple[str, ...]
    layout: str  # "chunked" | "contiguous" | "netcdf3"
    variable_prefix: str = ""  # UCIJPL/ISSM writes exp13acabf_AIS_...


SAMPLE_EXPERIMENTS = (
    SampleExperiment("AWI", "PISM1", "PISM1", "ctrl_proj_std", ("lithk", "orog", "acabf", "lim", "sftgif"), "chunked"),
    SampleExperiment("AWI", "PISM1", "PISM1", "exp05", ("lithk", "orog", "acabf", "lim"), "chunked"),
    SampleExperiment("ILTS_PIK", "SICOPOLIS1", "SICOPOLIS", "hist_std", ("lithk", "orog", "topg", "lim"), "netcdf3"),
    SampleExperiment("UCIJPL", "ISSM", "ISSM", "exp13", ("lithk", "acabf", "base", "lim"), "contiguous", variable_prefix="exp13"),
    SampleExperiment("DOE", "MALI", "MALI", "expA1", ("lithk", "orog", "lim"), "contiguous"),
    SampleExperiment("ULB", "fETISh_16km", "fETISh", "expA6", ("lithk", "orog", "acabf", "lim"), "chunked"),
)
# The real archive's known 0-byte file (on the skip list), so the demo shows a skipped file.
ZERO_BYTE_FILE = "ULB/fETISh_16km/expA6/xvelbase_AIS_ULB_fETISh_expA6.nc"


def grid(n: int = 191) -> np.ndarray:
    return np.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, n)


def file_name(exp: SampleExperiment, variable: str) -> str:
    return f"{exp.variable_prefix}{variable}_AIS_{exp.institution}_{exp.model_token}_{exp.experiment}.nc"


def sample_dataset(variable: str, seed_text: str, n_times: int = 5, n: int = 191, start_year: int = 2015) -> xr.Dataset:
    """One ISMIP6-like variable: ST on Jan 1, FL at mid-year, 365_day days since the start year."""
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    flux = variable_type(variable) == "FL"
    time = np.arange(n_times) * 365.0 + (182.5 if flux else 0.0)
    time_attrs = {"units": f"days since {start_year}-01-01", "calendar": "365_day", "standard_name": "time", "axis": "T"}
    coords = {"time": ("time", time, time_attrs)}
    attrs = {"units": UNITS.get(variable, "1")}
    if variable == "lim":
        data = xr.Variable(("time",), (2.6e19 + rng.normal(0, 1e16, n_times)).astype("float64"), attrs)
    else:
        values = rng.normal(1000.0, 300.0, (n_times, n, n)).astype("float32")
        yy, xx = np.meshgrid(grid(n), grid(n), indexing="ij")
        values[:, np.hypot(xx, yy) > 2_600_000] = np.nan  # ocean beyond the ice sheet
        data = xr.Variable(("time", "y", "x"), values, attrs)
        coords |= {
            "x": ("x", grid(n), {"units": "m", "standard_name": "projection_x_coordinate"}),
            "y": ("y", grid(n), {"units": "m", "standard_name": "projection_y_coordinate"}),
        }
    return xr.Dataset({variable: data}, coords=coords, attrs={"Conventions": "CF-1.7", "source": "ismip6_assets sample archive"})


def write_netcdf(ds: xr.Dataset, path: Path, layout: str) -> None:
    variable = next(iter(ds.data_vars))
    time_encoding = {"time": {"dtype": "float64", "_FillValue": None}}
    coord_encoding = {c: {"_FillValue": None} for c in ("x", "y") if c in ds}
    if layout == "netcdf3":
        ds.to_netcdf(path, format="NETCDF3_CLASSIC", engine="netcdf4", encoding=time_encoding | coord_encoding)
        return
    var_encoding = {"contiguous": True} if layout == "contiguous" else {"zlib": True, "complevel": 1, "chunksizes": (1, *ds[variable].shape[1:])}
    if ds[variable].ndim == 1:
        var_encoding = {"contiguous": True} if layout == "contiguous" else {"zlib": True, "chunksizes": ds[variable].shape}
    ds.to_netcdf(path, format="NETCDF4", engine="netcdf4", encoding=time_encoding | coord_encoding | {variable: var_encoding})


def write_sample_archive(dest: str | Path, n_times: int = 5, grid_size: int = 191, experiments=SAMPLE_EXPERIMENTS) -> list[Path]:
    """Write the sample archive under ``dest/Projection-AIS``; return the files written."""
    root = Path(dest) / "Projection-AIS"
    written = []
    for exp in experiments:
        folder = root / exp.institution / exp.model / exp.experiment
        folder.mkdir(parents=True, exist_ok=True)
        for variable in exp.variables:
            path = folder / file_name(exp, variable)
            write_netcdf(sample_dataset(variable, str(path.relative_to(root)), n_times, grid_size), path, exp.layout)
            written.append(path)
    zero = root / ZERO_BYTE_FILE
    if zero.parent.exists():
        zero.write_bytes(b"")
        written.append(zero)
    return written
