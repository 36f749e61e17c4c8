"""An archive whose 2-D fields give Seroussi et al. (2020)'s recomputed JPL1_ISSM exp05 volumes.

``tests/reference/ismip6-real/`` (its README says where from) holds the recomputed ice volume above
floatation of JPL1_ISSM exp05 and its difference from ctrl_proj_std, labelled 2016 ... 2100
(end-of-year snapshots, stamped Jan 1 of the label: model years 2015 ... 2099). Here thickness is a dome scaled per year so that the ISMIP6
formula, with the model's own densities and the EPSG:3031 area factor computed here with pyproj
directly, gives exactly those volumes; everything the formula must *not* count is there too, each
large enough to move the answer past the tolerance if counted:

- floating ice (``sftgif`` 1, ``sftgrf`` 0), ice-free land with ISSM's minimum thickness
  (``sftgif`` 0, ``sftgrf`` 1, 10 m), masks a little above 1 (interpolation: count as 1), marginal
  cells whose thickness is the declared ``_FillValue`` (-9999) under masks of 1, and the ocean
  filled with a literal 1e20 sentinel in thickness and masks;
- the control run starts one model year earlier than the projection (stamped 2015-01-01), so a
  control matched by position instead of by year is a year off; ctrl_proj_open, the other melt
  family's control, drifts differently.

The same construction serves a second model with other densities (NCAR_CISM: 910/1026), so one
density pair for every model cannot match both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import xarray as xr

from ismip6_assets.core.sample_archive import grid, write_netcdf

REAL = Path(__file__).resolve().parent / "reference" / "ismip6-real"
EXP_FILE = REAL / "computed_ivaf_AIS_JPL1_ISSM_exp05.nc"
MINUS_CTRL_FILE = REAL / "computed_ivaf_minus_ctrl_proj_AIS_JPL1_ISSM_exp05.nc"
N = 41  # grid points a side: 152 km cells over the standard extent (the files stay small)
FILL = -9999.0
SENTINEL = 1e20
MODELS = {("JPL1", "ISSM"): (917.0, 1023.0, "contiguous"), ("NCAR", "CISM"): (910.0, 1026.0, "chunked")}


def reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels 2016..2100, ivaf of exp05, ivaf of exp05 minus ctrl_proj_std), m3, as published."""
    with xr.open_dataset(EXP_FILE, decode_times=False) as exp, xr.open_dataset(MINUS_CTRL_FILE, decode_times=False) as diff:
        assert float(exp.rhoi) == 917.0 and float(exp.rhow) == 1023.0
        return exp.time.values.astype(int), exp.ivaf.values.astype("float64"), diff.ivaf.values.astype("float64")


def expected_sle_mm(rho_ice: float = 917.0) -> dict[int, float]:
    """Model year -> sea-level contribution, from the published numbers (t0: the first step)."""
    labels, _, dv = reference()
    return {int(label) - 1: float(-(d - dv[0]) * rho_ice / (1000 * 3.625e14) * 1000) for label, d in zip(labels, dv)}


def af2_by_pyproj(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xx, yy = np.meshgrid(x, y)
    lon, lat = pyproj.Transformer.from_crs("EPSG:3031", "EPSG:4326", always_xy=True).transform(xx, yy)
    return 1.0 / pyproj.Proj("EPSG:3031").get_factors(lon, lat).areal_scale


def layout_masks() -> dict[str, np.ndarray]:
    """Static masks and bed (y, x) with the regions the module docstring lists."""
    x = grid(N)
    yy, xx = np.meshgrid(x, x, indexing="ij")
    r = np.hypot(xx, yy)
    grounded = r < 1.9e6
    floating = (r >= 1.9e6) & (r < 2.3e6)
    ice_free_land = (r >= 2.3e6) & (r < 2.6e6) & (xx > 0)
    ocean = ~(grounded | floating | ice_free_land)
    edge = grounded & (r > 1.6e6)
    missing_thickness = edge & (yy > 1.0e6) & (np.abs(xx) < 4e5)  # _FillValue under masks of 1
    over_one = grounded & (r < 6e5)  # sftgif a little above 1, clipped to 1
    grounding_line = edge & (yy < -1.0e6)  # partly grounded cells
    sftgif = np.where(grounded | floating, 1.0, 0.0)
    sftgif[over_one] = 1.05
    sftgrf = np.where(grounded | ice_free_land, 1.0, 0.0)
    sftgrf[grounding_line] = 0.5
    topg = 400.0 - 1200.0 * (r / 2.0e6) ** 2 - 900.0 * np.exp(-((np.hypot(xx + 1.0e6, yy) / 5e5) ** 2))  # a marine basin
    return {"grounded": grounded, "floating": floating, "ice_free_land": ice_free_land, "ocean": ocean,
            "missing_thickness": missing_thickness, "sftgif": sftgif, "sftgrf": sftgrf, "topg": topg, "r": r}


def thickness_for(targets: np.ndarray, rho_ice: float, rho_ocean: float) -> np.ndarray:
    """lithk (steps, y, x) whose ISMIP6 volume above floatation is `targets` (m3) at each step."""
    m = layout_masks()
    x = grid(N)
    cell = (x[1] - x[0]) ** 2
    counted = m["grounded"] & ~m["missing_thickness"]
    weight = np.where(counted, np.clip(m["sftgif"], 0, 1) * np.clip(m["sftgrf"], 0, 1) * af2_by_pyproj(x, x) * cell, 0.0)
    dome = 1000.0 + 2500.0 * np.clip(1 - (m["r"] / 1.9e6) ** 2, 0, None)
    bed_term = (rho_ocean / rho_ice) * np.minimum(m["topg"], 0.0)
    scale = (targets - (weight * bed_term).sum()) / (weight * dome).sum()
    lithk = scale[:, None, None] * np.where(counted, dome, 0.0)[None]
    lithk[:, m["floating"]] = 350.0
    lithk[:, m["ice_free_land"]] = 10.0
    lithk[:, m["missing_thickness"]] = FILL
    lithk[:, m["ocean"]] = SENTINEL
    return lithk


def _dataset(variable: str, values: np.ndarray, time_days: np.ndarray, attrs: dict) -> xr.Dataset:
    x = grid(N)
    dims = ("time", "y", "x") if values.ndim == 3 else ("y", "x")
    coords = {"x": ("x", x, {"units": "m"}), "y": ("y", x, {"units": "m"})}
    if values.ndim == 3:
        coords["time"] = ("time", time_days, {"units": "days since 2015-01-01", "calendar": "365_day", "standard_name": "time"})
    return xr.Dataset({variable: (dims, values.astype("float32"), attrs)}, coords=coords)


def write_partition(root: Path, institution: str, model: str, experiment: str, targets: np.ndarray, first_stamp_days: float, lim: bool = False) -> None:
    rho_ice, rho_ocean, layout = MODELS[(institution, model)]
    folder = root / "Projection-AIS" / institution / model / experiment
    folder.mkdir(parents=True, exist_ok=True)
    m = layout_masks()
    steps = len(targets)
    time = first_stamp_days + 365.0 * np.arange(steps)  # Jan 1 stamps: end-of-year snapshots
    lithk = thickness_for(targets, rho_ice, rho_ocean)
    masks = {v: np.broadcast_to(np.where(m["ocean"], SENTINEL, m[v]), lithk.shape) for v in ("sftgif", "sftgrf")}
    fields = {"lithk": (lithk, {"units": "m", "_FillValue": FILL}), "topg": (np.broadcast_to(m["topg"], lithk.shape), {"units": "m"}),
              "sftgif": (masks["sftgif"], {"units": "1"}), "sftgrf": (masks["sftgrf"], {"units": "1"})}
    for variable, (values, attrs) in fields.items():
        fill = attrs.pop("_FillValue", None)
        ds = _dataset(variable, np.asarray(values), time, attrs)
        storage = {"contiguous": True} if layout == "contiguous" else {"zlib": True, "chunksizes": (1, N, N)}
        encoding = {"time": {"dtype": "float64", "_FillValue": None}, "x": {"_FillValue": None}, "y": {"_FillValue": None},
                    variable: {"_FillValue": fill} | storage}
        ds.to_netcdf(folder / f"{variable}_AIS_{institution}_{model}_{experiment}.nc", format="NETCDF4", engine="netcdf4", encoding=encoding)
    if lim:
        series = xr.Dataset({"lim": (("time",), targets * rho_ice, {"units": "kg"})},
                            coords={"time": ("time", time, {"units": "days since 2015-01-01", "calendar": "365_day"})})
        write_netcdf(series, folder / f"lim_AIS_{institution}_{model}_{experiment}.nc", layout)


def write_real_numbers_archive(root: Path) -> None:
    """Both models' exp05, ctrl_proj_std (from one model year earlier) and ctrl_proj_open."""
    _, ivaf, dv = reference()
    control = ivaf - dv
    year_before = control[0] - (control[1] - control[0])  # the control's state one year before the projection starts
    for institution, model in MODELS:
        write_partition(root, institution, model, "exp05", ivaf, 365.0, lim=True)
        write_partition(root, institution, model, "ctrl_proj_std", np.concatenate([[year_before], control]), 0.0)
        write_partition(root, institution, model, "ctrl_proj_open", np.full(len(ivaf), ivaf[0] - 5e11), 365.0)
