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

The fields are read with Dask in blocks of whole stored chunks along time (`block_steps`), every
chunk once, one task a block computing its steps' sums (`block_volumes`). Knows nothing of Dagster
or of where the store is.
"""

from __future__ import annotations

import fnmatch
import math
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from typing import TYPE_CHECKING

import dask
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from ismip6_assets.core import unshuffle
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.views import view_group

if TYPE_CHECKING:
    import dask.array as da

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
    # EPSG:3031 is a polar stereographic projection about the South Pole: its scale at a cell depends
    # on the cell's distance from the pole alone. Each distinct distance is projected once (a grid
    # centred on the pole has about an eighth as many as cells: PROJ's factors of every cell of the
    # 8 km grid took 0.4 s), on the meridian x = 0.
    squared = np.add.outer(ys * ys, xs * xs)  # (y, x)
    distinct, cell = np.unique(squared, return_inverse=True)
    distance = np.sqrt(distinct)
    lon, lat = pyproj.Transformer.from_crs("EPSG:3031", "EPSG:4326", always_xy=True).transform(np.zeros_like(distance), -distance)
    return (1.0 / pyproj.Proj("EPSG:3031").get_factors(lon, lat).areal_scale)[cell.reshape(squared.shape)]


def area_factor(x: np.ndarray, y: np.ndarray) -> xr.DataArray:
    """`af2` on the grid (dims ``y``, ``x``; coordinates in metres of EPSG:3031)."""
    values = _area_factor(np.asarray(x, "float64").tobytes(), np.asarray(y, "float64").tobytes())
    return xr.DataArray(values, dims=("y", "x"))


def _spacing(values: np.ndarray, axis: str) -> float:
    steps = np.diff(np.asarray(values, "float64"))
    if len(steps) == 0 or not np.allclose(steps, steps[0], rtol=1e-6):
        raise MissingFields(f"{axis} is not an evenly spaced grid")
    return abs(float(steps[0]))


# A Dask task reads one field's block: whole stored chunks along time, about this many bytes
# decoded (seven steps of a real 8 km field, more of a coarser grid), the block's chunks fetched and
# decoded at once by zarr (its ``async.concurrency`` and ``codec_pipeline.batch_size``, which decodes a
# batch's chunks side by side): memory stays a few steps a field per worker, latency is overlapped, and
# zarr's per-read cost is paid once a block, not once a step (bench/RESULTS.md, "Sea level").
BLOCK_BYTES = 16 * 2**20


# zarr fetches an array's chunks at most ``async.concurrency`` at a time (default 10), so a block of
# 86 one-step chunks (a scalar series, a small grid's field) waited for 9 round trips in turn on
# gs://; this many at once fetches such a block in one. It bounds requests in flight, not memory:
# a block's decoded chunks are held together anyway (`BLOCK_BYTES`).
BLOCK_FETCHES_AT_ONCE = 128


@contextmanager
def block_fetches():
    """Within it, zarr fetches up to `BLOCK_FETCHES_AT_ONCE` chunks of a block at once. zarr's
    config is this process's: the reads of a Dask cluster's workers keep their own setting."""
    with zarr.config.set({"async.concurrency": BLOCK_FETCHES_AT_ONCE}):
        yield


def block_steps(fields: list[xr.DataArray], block_bytes: int | None = None) -> int:
    """Time steps a block of `fields` (opened lazily, not yet Dask) holds: a multiple of every
    field's stored time chunk (no stored chunk read by two tasks), ~`block_bytes` of the largest."""
    stored = math.lcm(*(int(f.encoding.get("preferred_chunks", {}).get("time", 1)) for f in fields))
    step_bytes = max(f.dtype.itemsize * int(np.prod([n for d, n in f.sizes.items() if d != "time"])) for f in fields)
    return max(stored, (block_bytes or BLOCK_BYTES) // max(step_bytes, 1) // stored * stored)


def time_blocks(field: xr.DataArray, steps: int | None = None) -> xr.DataArray:
    """`field` (opened lazily) as a Dask array of `steps` (default `block_steps`) along time, whole otherwise.

    Named by a fresh token, not by Dask's tokenizing of the field's data: that pickles the Icechunk
    store under it (`IcechunkStore.__getstate__`, a blocking call that keeps the GIL), and threads
    reading partitions side by side hung on it (earth-mover/icechunk#563). Each call chunks its
    field once, so nothing is lost by never sharing a name."""
    steps = steps or block_steps([field])
    return field.chunk({d: steps if d == "time" else -1 for d in field.dims}, token=uuid.uuid4().hex)


def _rules(field: xr.DataArray) -> tuple[float | None, float | None, float | None]:
    return tuple(float(field.attrs[k]) if k in field.attrs else None for k in ("ignore_value", "valid_min", "valid_max"))


def _valid(a: np.ndarray, rules: tuple) -> np.ndarray:
    """Where `a` holds a value: finite and not fill-sized (NaN and decoded fill values compare
    False), and with `rules` (`_rules`: the field's recorded ``ignore_value`` sentinel,
    ``valid_min``, ``valid_max``) not the sentinel and within the valid range."""
    good = np.abs(a) < FILL_MAGNITUDE
    ignore, low, high = rules
    if ignore is not None:
        good &= a != ignore
    if low is not None:
        good &= a >= low
    if high is not None:
        good &= a <= high
    return good


def _or_zero(a: np.ndarray, rules: tuple) -> np.ndarray:
    """`a` (its own dtype) with 0 where it holds no value (`_valid`)."""
    return np.where(_valid(a, rules), a, 0)


def _has_any_value(a: np.ndarray) -> bool:
    """Not all NaN (a year the view's variable lacks reads as all NaN); one look at the first cell
    spares the pass over the grid for nearly every step."""
    return a.size > 0 and not (np.isnan(a.flat[0]) and np.isnan(a).all())


def block_volumes(lithk, topg, sftgif, sftgrf, *, af2: np.ndarray, ratio: float, rules: dict) -> np.ndarray:
    """Per time step of a block (``(time, y, x)`` arrays; `topg` may be ``(y, x)``): the sum of
    ``hf * sftgif * sftgrf * af2`` and whether lithk, sftgif and sftgrf have any value (1/0).

    One step at a time, so a block's temporaries are one step's (the method in the module docstring).
    Masks stay in the fields' precision (values in [0, 1]); thickness and the bed term are float64,
    and the sum over the grid a float64 sum of products: a continent's volume loses no millimetre."""
    out = np.empty((len(lithk), 4))
    static_bed = np.minimum(_or_zero(topg, rules["topg"]), 0.0, dtype="float64") if topg.ndim == 2 else None
    for t in range(len(lithk)):
        bed = static_bed if static_bed is not None else np.minimum(_or_zero(topg[t], rules["topg"]), 0.0, dtype="float64")
        hf = lithk[t].astype("float64")
        hf += ratio * bed
        # A cell whose thickness is missing holds no ice: its bed term must not count either.
        hf[~_valid(lithk[t], rules["lithk"])] = 0.0
        grounded_ice = np.clip(_or_zero(sftgif[t], rules["sftgif"]), 0, 1) * np.clip(_or_zero(sftgrf[t], rules["sftgrf"]), 0, 1)
        # einsum, not np.dot: OpenBLAS's dot runs threads of its own inside each of Dask's, and the
        # oversubscribed cores made two Dask threads slower than one (Dask's "Avoid oversubscribing
        # threads"; dask/distributed#7177 sets OPENBLAS_NUM_THREADS=1 in its workers for it).
        out[t, 0] = np.einsum("i,i->", hf.ravel(), (grounded_ice * af2).ravel())
        # A year a field lacks reads as all-missing in the view: no volume for it, rather than 0.
        out[t, 1:] = [_has_any_value(a[t]) for a in (lithk, sftgif, sftgrf)]
    return out


def _one_block(block):
    """The array of a block (`time_blocks`: the grid is one Dask chunk). Dask's ``blockwise`` hands a
    contracted dimension's blocks as a list, and ``concatenate=True`` copies even a single block."""
    while isinstance(block, list):
        (block,) = block
    return block


def _block_volumes_of_blocks(lithk, topg, sftgif, sftgrf, **kwargs) -> np.ndarray:
    return block_volumes(*(_one_block(b) for b in (lithk, topg, sftgif, sftgrf)), **kwargs)


def ivaf_graph(view: xr.Dataset, rho_ice: float, rho_ocean: float) -> da.Array:
    """The lazy ``(time, 4)`` array of `block_volumes` over `view` (opened with ``chunks=None``):
    one task a block, its four fields' chunks each read once; `ivaf_series` turns it, computed,
    into the series. Raises `MissingFields` (see `ivaf_of_view`)."""
    missing = [f for f in FIELDS if f not in view.data_vars]
    if missing:
        left_out = view.attrs.get("ismip6_left_out", {})
        raise MissingFields("; ".join(f"no {f}" + (f" ({left_out[f]})" if f in left_out else "") for f in missing))
    for name in ("lithk", "sftgif", "sftgrf"):
        if set(view[name].dims) != {"time", "y", "x"}:
            raise MissingFields(f"{name} has dims {view[name].dims}, not (time, y, x)")
    if set(view["topg"].dims) not in ({"time", "y", "x"}, {"y", "x"}):
        raise MissingFields(f"topg has dims {view['topg'].dims}, not (time, y, x) or (y, x)")
    if "x" not in view.coords or "y" not in view.coords or "year" not in view.coords:
        raise MissingFields("the view has no x/y grid or no year coordinate")
    cell = _spacing(view["x"].values, "x") * _spacing(view["y"].values, "y")
    af2 = area_factor(view["x"].values, view["y"].values).values
    timed = [f for f in FIELDS if "time" in view[f].dims]
    steps = block_steps([view[f] for f in timed])
    arrays = {f: time_blocks(view[f].transpose(*(("time",) if f in timed else ()), "y", "x"), steps).data for f in FIELDS}
    indices = {f: "tyx" if f in timed else "yx" for f in FIELDS}
    import dask.array as da  # here, not at import: a quarter second every Dagster process would pay (code server, daemon)

    graph = da.blockwise(
        _block_volumes_of_blocks, "ts", *(x for f in ("lithk", "topg", "sftgif", "sftgrf") for x in (arrays[f], indices[f])),
        new_axes={"s": 4}, concatenate=False, dtype="float64",
        af2=af2, ratio=rho_ocean / rho_ice, rules={f: _rules(view[f]) for f in FIELDS},
    )
    return graph * np.array([cell, 1.0, 1.0, 1.0])


def ivaf_series(view: xr.Dataset, computed: np.ndarray) -> pd.Series:
    """`ivaf_graph`'s array, computed, as the series by model year (years without a field left out)."""
    keep = computed[:, 1:].all(axis=1)
    years = view["year"].values.astype("int64")
    return pd.Series(computed[keep, 0], index=pd.Index(years[keep], name="year"), name="ivaf_m3")


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
    with block_fetches():
        (computed,) = dask.compute(ivaf_graph(view, rho_ice, rho_ocean), scheduler=scheduler)
    return ivaf_series(view, computed)


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


@contextmanager
def view_codecs():
    """Within it, arrays opened decode as `open_view`'s do. zarr's config is the process's: threads
    opening views side by side run inside one such context, so none of them restores the defaults
    while another opens its arrays."""
    with zarr.config.set({"codec_pipeline.batch_size": BLOCK_FETCHES_AT_ONCE, **unshuffle.selected()}):
        yield


def open_view(session, partition: PartitionKey, chunks) -> xr.Dataset:
    """The partition's view group, lazily (`chunks`: Dask chunks, None: none; times left as stored).

    Its arrays decode a block's chunks in batches of up to `BLOCK_FETCHES_AT_ONCE` (zarr's
    ``codec_pipeline.batch_size``, 1 by default, fixed when an array is opened): a scalar series
    of 86 one-step chunks otherwise pays zarr's per-chunk scheduling 86 times. HDF5's shuffle is
    undone by `unshuffle.Shuffle` (NumPy, without the GIL), so the read threads do not take turns."""
    with view_codecs():
        return xr.open_zarr(session.store, group=view_group(partition), consolidated=False, decode_times=False, chunks=chunks)
