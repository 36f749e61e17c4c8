"""The ISMIP6 sea-level method: ice volume above floatation from 2-D fields, and the contribution
of a projection against its control run (Seroussi et al. 2020, The Cryosphere 14, 3033-3070).

Per time step, from the partition's view (views.py: every field on ISMIP6 model years)::

    hf   = lithk + (rho_ocean / rho_ice) * min(topg, 0)
    ivaf = sum(hf * sftgif * sftgrf * af2 * dx * dy)

with NaN, fill values and literal sentinels read as no ice (0), the masks clipped to [0, 1], `af2`
the inverse areal scale factor of EPSG:3031 on the WGS84 ellipsoid (1.057 at the pole, 1 at the
true-scale latitude 71 S: the grid cells are not all ``dx * dy`` of the Earth), and each model's own
densities (`densities`). Then, with ``dV = ivaf(exp) - ivaf(control)`` matched by model year::

    sle_mm = -(dV(t) - dV(t0)) * rho_ice / (1000 * 3.625e14) * 1000      (positive = sea-level rise)

The fields are read with Dask in blocks of whole stored chunks along time (`time_blocks`), every
chunk once (the four per-step sums share one graph). Knows nothing of Dagster or of where the store is.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import lru_cache

import dask
import numpy as np
import pandas as pd
import xarray as xr

from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.views import view_group

FIELDS = ("lithk", "topg", "sftgif", "sftgrf")
# ISMIP6 scalar series the ensemble datasets carry when the archive has them (facts: "Scalars").
SCALARS = ("lim", "limnsw", "iareagr", "iareafl", "tendacabf", "tendlibmassbf", "tendlibmassbffl", "tendlicalvf", "tendlifmassbf", "tendligroundf")
OCEAN_AREA_M2 = 3.625e14
FRESH_WATER_DENSITY = 1000.0  # kg m-3
# Any value this large is a fill (netCDF's default 9.97e36, the 1e20 ocean sentinels), not a thickness or a fraction.
FILL_MAGNITUDE = 1e10
# Bump when the numbers a partition gives would change: cached volumes computed before are redone.
METHOD_VERSION = 1
METHOD = (
    "ISMIP6 (Seroussi et al. 2020): per time step hf = lithk + (rho_ocean/rho_ice)*min(topg, 0); "
    "ivaf = sum(hf*sftgif*sftgrf*af2*dx*dy) with NaN, fill values and sentinels as no ice and the masks clipped to [0, 1]; "
    "af2 = 1/areal scale factor of EPSG:3031 on WGS84 (pyproj); each model's own densities; "
    "sle_mm = -(dV(t) - dV(t0))*rho_ice/(1000*3.625e14)*1000 with dV = ivaf(experiment) - ivaf(control of its ocean-melt family) "
    "matched by ISMIP6 model year, t0 the first year both have; positive = sea-level rise"
)

# (rho_ice, rho_ocean) in kg m-3 by INST_MODEL pattern, first match wins (facts: "Sea-level contribution").
DENSITIES = (
    ("JPL1_ISSM", 917.0, 1023.0),
    ("UCIJPL_ISSM", 917.0, 1023.0),
    ("AWI_*", 910.0, 1023.0),
    ("DOE_MALI", 910.0, 1023.0),
    ("LSCE_GRISLI*", 918.0, 1023.0),
    ("NCAR_CISM", 910.0, 1026.0),
    ("UTAS_ElmerIce", 900.0, 1025.0),
)
DEFAULT_DENSITIES = (910.0, 1028.0)


class MissingFields(ValueError):
    """Why a partition has no ice volume (one line a human reads)."""


def densities(model_group: str) -> tuple[float, float]:
    """(rho_ice, rho_ocean) the model ``INST_MODEL`` used, in kg m-3."""
    for pattern, rho_ice, rho_ocean in DENSITIES:
        if fnmatch.fnmatchcase(model_group, pattern):
            return rho_ice, rho_ocean
    return DEFAULT_DENSITIES


@lru_cache(maxsize=8)
def _area_factor(x: bytes, y: bytes) -> np.ndarray:
    import pyproj

    xs, ys = np.frombuffer(x), np.frombuffer(y)
    xx, yy = np.meshgrid(xs, ys)  # (y, x)
    lon, lat = pyproj.Transformer.from_crs("EPSG:3031", "EPSG:4326", always_xy=True).transform(xx, yy)
    return 1.0 / pyproj.Proj("EPSG:3031").get_factors(lon, lat).areal_scale


def area_factor(x: np.ndarray, y: np.ndarray) -> xr.DataArray:
    """`af2` on the grid (dims ``y``, ``x``; coordinates in metres of EPSG:3031)."""
    values = _area_factor(np.asarray(x, "float64").tobytes(), np.asarray(y, "float64").tobytes())
    return xr.DataArray(values, dims=("y", "x"))


def _spacing(values: np.ndarray, axis: str) -> float:
    steps = np.diff(np.asarray(values, "float64"))
    if len(steps) == 0 or not np.allclose(steps, steps[0], rtol=1e-6):
        raise MissingFields(f"{axis} is not an evenly spaced grid")
    return abs(float(steps[0]))


def no_data(field: xr.DataArray) -> xr.DataArray:
    """Where `field` holds no value: NaN (decoded fill values included), a recorded ``ignore_value``
    sentinel, values beyond a declared ``valid_min``/``valid_max``, and fill-sized values."""
    bad = ~np.isfinite(field) | (abs(field) >= FILL_MAGNITUDE)
    if "ignore_value" in field.attrs:
        bad |= field == float(field.attrs["ignore_value"])
    if "valid_min" in field.attrs:
        bad |= field < float(field.attrs["valid_min"])
    if "valid_max" in field.attrs:
        bad |= field > float(field.attrs["valid_max"])
    return bad


def no_data_as_zero(field: xr.DataArray) -> xr.DataArray:
    """The field in float64 with 0 where it holds no value (`no_data`)."""
    values = field.astype("float64")
    return values.where(~no_data(values), 0.0)


# A Dask task reads one field's block: whole stored chunks along time, about this many stored bytes
# (a few time steps of a real 8 km field), the block's chunks fetched at once by zarr (its
# ``async.concurrency``): memory stays a few steps a field per worker, and latency is overlapped.
BLOCK_BYTES = 8 * 2**20


def time_blocks(field: xr.DataArray, block_bytes: int = BLOCK_BYTES) -> xr.DataArray:
    """`field` (opened lazily, not yet Dask) as a Dask array whose blocks are whole stored chunks
    along time (so no stored chunk is read by two tasks) and the whole grid, ~`block_bytes` each."""
    if "time" not in field.dims:
        return field.chunk({d: -1 for d in field.dims})
    stored = int(field.encoding.get("preferred_chunks", {}).get("time", 1))
    step_bytes = field.dtype.itemsize * int(np.prod([n for d, n in field.sizes.items() if d != "time"]))
    steps = max(stored, block_bytes // max(step_bytes, 1) // stored * stored)
    return field.chunk({d: steps if d == "time" else -1 for d in field.dims})


def ivaf_graph(view: xr.Dataset, rho_ice: float, rho_ocean: float) -> tuple[xr.DataArray, list[xr.DataArray]]:
    """The lazy per-step volume (m3) of `view` (opened with ``chunks=None``) and, per thickness and
    mask, whether a step has any value; `ivaf_series` turns them, computed, into the series.

    Every field is read in `time_blocks`, once: the volume and the presence tests share its tasks.
    Raises `MissingFields` (see `ivaf_of_view`)."""
    missing = [f for f in FIELDS if f not in view.data_vars]
    if missing:
        left_out = view.attrs.get("ismip6_left_out", {})
        raise MissingFields("; ".join(f"no {f}" + (f" ({left_out[f]})" if f in left_out else "") for f in missing))
    for name in ("lithk", "sftgif", "sftgrf"):
        if set(view[name].dims) != {"time", "y", "x"}:
            raise MissingFields(f"{name} has dims {view[name].dims}, not (time, y, x)")
    if "x" not in view.coords or "y" not in view.coords or "year" not in view.coords:
        raise MissingFields("the view has no x/y grid or no year coordinate")
    cell = _spacing(view["x"].values, "x") * _spacing(view["y"].values, "y")
    af2 = area_factor(view["x"].values, view["y"].values)
    fields = {f: time_blocks(view[f]) for f in FIELDS}
    thickness = fields["lithk"].astype("float64")
    bed = no_data_as_zero(fields["topg"])
    ice = no_data_as_zero(fields["sftgif"]).clip(0.0, 1.0)
    grounded = no_data_as_zero(fields["sftgrf"]).clip(0.0, 1.0)
    # A cell whose thickness is missing holds no ice: its bed term must not count either.
    above_floatation = (thickness + (rho_ocean / rho_ice) * np.minimum(bed, 0.0)).where(~no_data(thickness), 0.0)
    volume = (above_floatation * ice * grounded * af2).sum(("y", "x")) * cell
    # A year a field lacks reads as all-missing in the view: no volume for it, rather than 0.
    present = [fields[f].notnull().any(("y", "x")) for f in ("lithk", "sftgif", "sftgrf")]
    return volume, present


def ivaf_series(view: xr.Dataset, volume: xr.DataArray, present: list[xr.DataArray]) -> pd.Series:
    """`ivaf_graph`'s results, computed, as the series by model year (years without a field left out)."""
    keep = np.logical_and.reduce([np.asarray(p) for p in present])
    years = view["year"].values.astype("int64")
    return pd.Series(np.asarray(volume)[keep], index=pd.Index(years[keep], name="year"), name="ivaf_m3")


def ivaf_of_view(view: xr.Dataset, rho_ice: float, rho_ocean: float, scheduler=None) -> pd.Series:
    """Ice volume above floatation (m3) per ISMIP6 model year of a partition's view.

    Parameters
    ----------
    view
        The view group opened lazily (`open_view` with ``chunks=None``), with ``year``.
    rho_ice, rho_ocean
        The model's densities (`densities`).
    scheduler
        Dask's ``scheduler=`` (None: Dask's default; `executors.read_scheduler` gives the one of
        the executor setting, a distributed ``Client`` on a cluster).

    Returns
    -------
    pandas.Series
        Indexed by model year (int), named ``ivaf_m3``; a year where thickness or a mask has no
        value at all (a year the view's variable lacks) is left out.

    Raises
    ------
    MissingFields
        When a field is absent (the reason names it), or the grid cannot carry the area factor.
    """
    volume, present = ivaf_graph(view, rho_ice, rho_ocean)
    volume, *present = dask.compute(volume, *present, scheduler=scheduler)  # one graph: each chunk read once
    return ivaf_series(view, volume, present)


def sea_level_mm(dv: np.ndarray, rho_ice: float) -> np.ndarray:
    """Sea-level contribution (mm, positive = rise) of a change `dv` (m3) of ice above floatation."""
    return -np.asarray(dv, "float64") * rho_ice / (FRESH_WATER_DENSITY * OCEAN_AREA_M2) * 1000.0


def contribution(experiment: pd.Series, control: pd.Series | None, rho_ice: float) -> tuple[pd.DataFrame, str | None]:
    """The projection's rows on its own years: ``ivaf_m3``, ``ivaf_control_m3``, ``sle_mm``, and the
    reason `sle_mm` is empty (None when it is not).

    ``dV = ivaf - ivaf_control`` matched by model year; ``t0`` is the first year both runs have.
    Years the control lacks have no ``sle_mm``.
    """
    rows = pd.DataFrame({"ivaf_m3": experiment.astype("float64")})
    rows["ivaf_control_m3"] = np.nan if control is None else control.reindex(rows.index).astype("float64")
    rows["sle_mm"] = np.nan
    if control is None:
        return rows, "no control run"
    dv = rows["ivaf_m3"] - rows["ivaf_control_m3"]
    common = dv.dropna()
    if common.empty:
        return rows, "no model year in common with its control run"
    rows["sle_mm"] = sea_level_mm(dv - common.iloc[0], rho_ice)
    return rows, None


LEFT_OUT_ATTR = "ismip6_left_out"
METHOD_ATTR = "ismip6_sea_level_method"


@dataclass
class PartitionVolume:
    partition: PartitionKey
    volume_key: str
    view_key: str
    ivaf: pd.Series | None  # by model year; None: left out
    reason: str | None = None
    recomputed: bool = False
    transient: bool = False  # the reason is a failed read, not the data: tried again next refresh
    # The view's ISMIP6 scalar series read with the fields (name -> (series by model year, attributes));
    # None: not read this refresh (the stored ensemble has them).
    scalars: dict[str, tuple[pd.Series, dict]] | None = None


def open_view(session, partition: PartitionKey, chunks) -> xr.Dataset:
    """The partition's view group, lazily (`chunks`: Dask chunks, None: none; times left as stored)."""
    return xr.open_zarr(session.store, group=view_group(partition), consolidated=False, decode_times=False, chunks=chunks)
