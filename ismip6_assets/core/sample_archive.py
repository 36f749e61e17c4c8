"""A synthetic archive with the real archive's shape, made of real NetCDF files.

The values are believable, and say they are synthetic: one idealised ice sheet per model, every
variable in its ISMIP6 units and real range (thickness 0-3.7 km, masks in [0, 1], acabf ~1e-5
kg m-2 s-1, velocities up to ~3e-5 m s-1, lim ~2.5e19 kg), consistent across variables and years;
two models share exp05, and the historical run ends on Jan 1 2015, where projections start.

Believable over time too: every run of a model evolves one ice sheet, whose state on Jan 1 2015 is
where the historical run ends and every control and projection starts. A control run drifts by a
few tenths of a mm of sea level a year (thickening or thinning, per model, as real spin-ups do); a
projection thins the margin on top of that, ~0.1 mm of sea level in its first year and more each
year after (some 35 mm by 2100, the upper end of ISMIP6's RCP 8.5 range), and the historical run
at a third of the first year's rate: sizes as the ISMIP6 method (Seroussi et al. 2020) measures
them, from ice volume above floatation (tests/test_sample_archive.py).

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

from ismip6_assets.core.variables import variable_type

GRID_HALF_WIDTH = 3_040_000.0
SYNTHETIC_NOTE = "SYNTHETIC sample data for demonstrations and tests: an idealised ice dome, not model output"
RHO_ICE, RHO_SEA = 917.0, 1028.0  # kg m-3
SECONDS_PER_YEAR = 365 * 86_400.0
PROJECTION_START = 2015  # projections start on Jan 1 2015; historical runs end there
# Thinning rates, m of ice a year: 1 m over the ~1.2e13 m2 of grounded ice is ~30 mm of sea level.
MAX_DRIFT = 0.02  # a control run's uniform drift, per model in [-MAX_DRIFT, MAX_DRIFT]
MARGIN_THINNING = 0.01  # a projection's extra thinning at the margin (x margin**4 inland) in its first year
ACCELERATION_YEARS = 30  # a projection's extra thinning rate doubles after this many years


@dataclass(frozen=True)
class SampleExperiment:
    institution: str
    model: str
    model_token: str
    experiment: str
    variables: tuple[str, ...]
    layout: str  # "chunked" | "contiguous" | "netcdf3"
    variable_prefix: str = ""  # UCIJPL/ISSM writes exp13acabf_AIS_...


# Two models share exp05; ILTS_PIK's historical run ends where its exp05 projection starts.
SAMPLE_EXPERIMENTS = (
    SampleExperiment("AWI", "PISM1", "PISM1", "ctrl_proj_std", ("lithk", "orog", "acabf", "lim", "sftgif", "sftgrf"), "chunked"),
    SampleExperiment("AWI", "PISM1", "PISM1", "exp05", ("lithk", "orog", "acabf", "lim"), "chunked"),
    SampleExperiment("ILTS_PIK", "SICOPOLIS1", "SICOPOLIS", "hist_std", ("lithk", "orog", "topg", "lim"), "netcdf3"),
    SampleExperiment("ILTS_PIK", "SICOPOLIS1", "SICOPOLIS", "exp05", ("lithk", "orog", "topg", "lim"), "chunked"),
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


def thinning(years_since_start: np.ndarray, margin: np.ndarray, drift: float, forcing: float) -> np.ndarray:
    """Ice lost (m) since Jan 1 2015 at each time (years since then; negative before) and place.

    The model's `drift` (m a year, everywhere) plus `forcing` times the margin thinning, which
    grows after 2015 (projections) and is steady before (the historical run); zero on Jan 1 2015."""
    t = np.asarray(years_since_start, dtype="float64")[:, None, None]
    return drift * t + forcing * MARGIN_THINNING * margin**4 * t * (1 + np.maximum(t, 0.0) / ACCELERATION_YEARS)


def thinning_rate(years_since_start: np.ndarray, margin: np.ndarray, drift: float, forcing: float) -> np.ndarray:
    """d `thinning` / dt (m a year)."""
    t = np.asarray(years_since_start, dtype="float64")[:, None, None]
    return drift + forcing * MARGIN_THINNING * margin**4 * (1 + 2 * np.maximum(t, 0.0) / ACCELERATION_YEARS)


def ice_sheet(seed_text: str, years: np.ndarray, n: int = 191, forcing: float = 1.0) -> dict[str, np.ndarray]:
    """Smooth, mutually consistent fields (years, n, n) of an idealised Antarctic ice sheet, each
    model year's state at its end (a flux's year: its mean, taken at mid-year).

    A Vialov dome (3.7 km at the centre, ~1.95 Mm radius) over bedrock that deepens seaward, with a
    marine basin; surface from flotation, masks from thickness, outward flow speeding up to the
    margin, surface mass balance higher at the coast. `seed_text` (one model) tilts the dome, moves
    the basin a little and sets the model's drift; the dome is the state on Jan 1 2015, and
    `thinning` evolves it (`forcing`: 0 for a control run, 1 for a projection, 0.3 historical).
    NaN beyond the model's circular domain, as many ISMIP6 files leave the ocean far from the ice.
    """
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    yy, xx = np.meshgrid(grid(n), grid(n), indexing="ij")
    r = np.hypot(xx, yy)
    tilt, angle = rng.uniform(0.0, 0.08), rng.uniform(0.0, 2 * np.pi)
    theta = np.arctan2(yy, xx)
    # Lopsided on purpose (a bigger East lobe, a peninsula to the upper left, as in EPSG:3031 maps),
    # so that a preview shows a flipped or transposed grid.
    radius = 1.95e6 * (1 + 0.12 * np.cos(theta) + 0.06 * np.cos(2 * theta - 1.0) + tilt * np.cos(theta - angle))
    basin_x, basin_y = rng.uniform(-1.4e6, -0.9e6), rng.uniform(-0.6e6, 0.0)
    drift = rng.uniform(-MAX_DRIFT, MAX_DRIFT)  # drawn last: the geometry stays what it was
    topg = 300.0 - 1500.0 * (r / 2.6e6) ** 2 - 1100.0 * np.exp(-(np.hypot(xx - basin_x, yy - basin_y) / 4.5e5) ** 2)
    topg += 150.0 * np.sin(xx / 4.0e5 + angle) * np.cos(yy / 5.0e5)
    end_of_year = np.asarray(years, dtype="float64") + 1 - PROJECTION_START  # the state closing each year
    elapsed = end_of_year[:, None, None]
    margin = np.clip(r / radius, 0.0, 1.0)
    dome = 3700.0 * np.clip(1.0 - margin ** (4 / 3), 0.0, None) ** (3 / 8)
    dome *= 1.0 - 0.35 * np.exp(-(np.hypot(xx - basin_x, yy - basin_y) / 6e5) ** 2)  # thinner over the marine basin
    along = np.clip(((xx + 1.5e6) * -1.0e6 + (yy - 0.8e6) * 1.4e6) / (1.0e6**2 + 1.4e6**2), 0.0, 1.0)
    off = np.hypot(xx - (-1.5e6 - 1.0e6 * along), yy - (0.8e6 + 1.4e6 * along))
    dome = np.maximum(dome, 900.0 * (1 - along) * np.clip(1 - off / 1.3e5, 0.0, None) ** 0.5)  # the peninsula
    lithk = np.clip(dome[None] - thinning(end_of_year, margin, drift, forcing), 0.0, None)
    floating = lithk * RHO_ICE / RHO_SEA < -topg
    base = np.where(floating, -lithk * RHO_ICE / RHO_SEA, topg)
    ice = lithk > 0
    speed = np.where(ice, 1e-7 + 3e-5 * margin**6 * (1 + 0.02 * forcing * np.maximum(elapsed, 0.0)), np.nan)  # m s-1, ~0-1 km/yr
    acabf = 1e-6 + 2.5e-5 * margin**5 - 1e-5 * np.exp(-(((r - radius) / 1.5e5) ** 2)) * (1 + 0.05 * np.sin(elapsed))
    outside = r > 2.9e6
    fields = {
        "lithk": lithk,
        "topg": np.broadcast_to(topg, lithk.shape),
        "base": np.where(ice, base, topg),
        "orog": np.where(ice, base + lithk, np.clip(topg, 0.0, None)),
        "sftgif": ice.astype(float),
        "sftgrf": (ice & ~floating).astype(float),
        "sftflf": (ice & floating).astype(float),
        "acabf": np.where(ice, acabf, np.nan),
        "dlithkdt": np.where(ice, -thinning_rate(end_of_year - 0.5, margin, drift, forcing) / SECONDS_PER_YEAR, np.nan),
        "litemptop": np.where(ice, 268.0 - 0.012 * (base + lithk), np.nan),
        "strbasemag": np.where(ice & ~floating, 8e4 * (1 - margin), 0.0),
        "hfgeoubed": np.broadcast_to(0.06 + 0.02 * np.exp(-((xx - basin_x) / 8e5) ** 2), lithk.shape),
    }
    for level, factor in (("surf", 1.0), ("mean", 0.9), ("base", 0.7)):
        fields[f"xvel{level}"] = factor * speed * xx / np.maximum(r, 1.0)
        fields[f"yvel{level}"] = factor * speed * yy / np.maximum(r, 1.0)
    fields["zvelsurf"] = np.where(ice, -acabf / RHO_ICE, np.nan)
    fields["zvelbase"] = np.where(ice, 0.0, np.nan)
    cell = (grid(n)[1] - grid(n)[0]) ** 2
    fields = {k: np.where(outside, np.nan, v) for k, v in fields.items()}
    above_flotation = np.clip(lithk + np.minimum(topg, 0.0) * RHO_SEA / RHO_ICE, 0.0, None)
    fields |= {
        "lim": RHO_ICE * cell * lithk.sum(axis=(1, 2)),
        "limnsw": RHO_ICE * cell * above_flotation.sum(axis=(1, 2)),
        "iareagr": cell * (ice & ~floating).sum(axis=(1, 2)).astype(float),
        "iareafl": cell * (ice & floating).sum(axis=(1, 2)).astype(float),
        "tendacabf": cell * np.nansum(np.where(ice, acabf, 0.0), axis=(1, 2)),
    }
    return fields


def sample_dataset(variable: str, seed_text: str, n_times: int = 5, n: int = 191, start_year: int = PROJECTION_START, forcing: float = 1.0) -> xr.Dataset:
    """One ISMIP6-like variable of `ice_sheet`: ST stamped at each year's end (Jan 1 of the next),
    FL at mid-year, 365_day days since the start year; the ISMIP6 units; "synthetic" in its attributes."""
    from ismip6_assets.core.variables import VARIABLES

    known = VARIABLES.get(variable)
    flux = variable_type(variable) == "FL"
    time = np.arange(n_times) * 365.0 + (182.5 if flux else 365.0)
    time_attrs = {"units": f"days since {start_year}-01-01", "calendar": "365_day", "standard_name": "time", "axis": "T"}
    coords = {"time": ("time", time, time_attrs)}
    attrs = {"units": known.units if known else "1"}
    if known is not None:
        attrs |= {"standard_name": known.standard_name, "long_name": known.long_name}
    fields = ice_sheet(seed_text, start_year + np.arange(n_times), n, forcing)
    values = fields.get(variable)
    if values is None:  # a variable the idealised sheet does not model: a smooth field in [0, 1]
        values = 0.5 + 0.5 * np.tanh(fields["lithk"] / 1000.0 - 1.0)
    if values.ndim == 1:
        data = xr.Variable(("time",), values.astype("float64"), attrs)
    else:
        data = xr.Variable(("time", "y", "x"), np.ascontiguousarray(values, dtype="float32"), attrs)
        coords |= {
            "x": ("x", grid(n), {"units": "m", "standard_name": "projection_x_coordinate"}),
            "y": ("y", grid(n), {"units": "m", "standard_name": "projection_y_coordinate"}),
        }
    global_attrs = {"Conventions": "CF-1.7", "title": "ISMIP6-like synthetic sample", "source": "ismip6_assets synthetic sample archive", "comment": SYNTHETIC_NOTE}
    return xr.Dataset({variable: data}, coords=coords, attrs=global_attrs)


def _forcing(experiment: str) -> float:
    """How hard the run thins the margin: control runs only drift; exp05-like projections thin."""
    return 0.0 if experiment.startswith("ctrl") else 0.3 if experiment.startswith("hist") else 1.0


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
            # One seed per model: every variable and experiment of a model shows the same ice sheet,
            # and its runs meet on Jan 1 2015.
            start = PROJECTION_START - n_times if exp.experiment.startswith("hist") else PROJECTION_START
            ds = sample_dataset(variable, f"{exp.institution}/{exp.model}", n_times, grid_size, start, _forcing(exp.experiment))
            write_netcdf(ds, path, exp.layout)
            written.append(path)
    zero = root / ZERO_BYTE_FILE
    if zero.parent.exists():
        zero.write_bytes(b"")
        written.append(zero)
    return written
