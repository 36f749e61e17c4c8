"""The ensemble of one experiment as an xarray dataset: every model x ISMIP6 model year, inline.

``derived/ensemble/{EXP}`` in the store (sea_level_store.py writes it): ``sle_mm``, ``ivaf`` and
``ivaf_control`` from the sea-level table, and every ISMIP6 scalar series (lim, limnsw, iareagr,
iareafl, tend*) the models' views hold: read through the store with a partition's fields when it is
recomputed, else taken from the stored ensemble (`stored_scalars`), not from the sources again. The time axis
is the views' (views.year_axis: Jul 1 of each model year, ``time_bnds``, ``year``), so
``ds.sle_mm.sel(time="2099")`` is the state at the end of 2099, which the papers label "2100".
No Dagster here.
"""

from __future__ import annotations

import icechunk
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from ismip6_assets.core.experiments import experiment_attributes
from ismip6_assets.core.sea_level import METHOD, SCALARS, densities
from ismip6_assets.core.sea_level import LEFT_OUT_ATTR, METHOD_ATTR, PartitionVolume
from ismip6_assets.core.sea_level import time_blocks
from ismip6_assets.core.views import year_axis

ENSEMBLE_ROOT = "derived/ensemble"


def ensemble_group(experiment: str) -> str:
    return f"{ENSEMBLE_ROOT}/{experiment}"


Scalars = dict[str, tuple[pd.Series, dict]]  # ISMIP6 scalar name -> (series by model year, its attributes)
SCALAR_ATTRS = ("units", "standard_name", "long_name")


def scalar_graph(view: xr.Dataset) -> dict[str, xr.DataArray]:
    """The view's ISMIP6 scalar series (opened with ``chunks=None``) as lazy Dask arrays, one block
    each (its stored chunks fetched at once), to compute with the fields (`scalar_series`)."""
    return {name: time_blocks(view[name]) for name in SCALARS if name in view.data_vars and view[name].dims == ("time",)}


def scalar_series(view: xr.Dataset, computed: dict[str, np.ndarray]) -> Scalars:
    """`scalar_graph`'s arrays, computed, by model year (missing values dropped), with their attributes."""
    years = view["year"].values.astype("int64")
    return {name: (pd.Series(np.asarray(values, "float64"), index=years).dropna(), {k: view[name].attrs[k] for k in SCALAR_ATTRS if k in view[name].attrs})
            for name, values in computed.items()}


def stored_scalars(session: icechunk.Session, experiment: str) -> dict[str, Scalars]:
    """The scalar series of each model (``INST_MODEL``) in the experiment's stored ensemble: inline
    values in the store, so a model whose sources did not change is not read from them again."""
    try:
        ds = xr.open_zarr(session.store, group=ensemble_group(experiment), consolidated=False, decode_times=False, chunks=None)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return {}
    names = [n for n in SCALARS if n in ds.data_vars and ds[n].dims == ("model", "time")]
    values = {n: ds[n].values for n in names}
    years = ds["year"].values.astype("int64")
    out = {}
    for i, model in enumerate(ds["model"].values.astype(str)):
        found = {n: (pd.Series(values[n][i], index=years).dropna(), {k: ds[n].attrs[k] for k in SCALAR_ATTRS if k in ds[n].attrs}) for n in names}
        out[model] = {n: v for n, v in found.items() if len(v[0])}
    return out


IVAF_ATTRS = {"units": "m3", "long_name": "ice volume above floatation (grounded ice, area-corrected)"}
SLE_ATTRS = {"units": "mm", "long_name": "sea-level contribution relative to the control run, positive = rise"}


def ensemble_dataset(
    experiment: str, table: pd.DataFrame, volumes: dict[str, PartitionVolume], left_out: dict[str, str], scalars: dict[str, Scalars]
) -> xr.Dataset:
    """The experiment's models (``INST_MODEL``) x model years: ``sle_mm``, ``ivaf``, ``ivaf_control``
    and every ISMIP6 scalar series their views hold, inline values with units and the method.

    `left_out`: partition key -> why it has no volume or no sea level (`sea_level_store.sea_level_rows`);
    the group's ``ismip6_left_out`` attribute maps each such model to its reason; `scalars`: partition
    key -> its scalar series (`scalar_series` or `stored_scalars`; a partition absent has none)."""
    partitions = sorted(v.partition for v in volumes.values() if v.partition.experiment == experiment)
    rows = table[table.experiment == experiment]
    scalars = {str(p): scalars.get(str(p), {}) for p in partitions}
    years = set(rows["year"].tolist()) | {int(y) for s in scalars.values() for series, _ in s.values() for y in series.index}
    years = np.array(sorted(years), dtype="int64")
    models = [p.model_group for p in partitions]
    data, attrs = {}, {}

    def grid(values_of) -> np.ndarray:
        out = np.full((len(models), len(years)), np.nan)
        for i, p in enumerate(partitions):
            series = values_of(p)
            if series is not None and len(series):
                out[i, np.searchsorted(years, series.index.to_numpy())] = series.to_numpy()
        return out

    def column(name):
        def of(p):
            r = rows[(rows.institution == p.institution) & (rows.model == p.model)]
            return pd.Series(r[name].to_numpy(), index=r["year"].to_numpy())
        return of

    data["sle_mm"] = (("model", "time"), grid(column("sle_mm")), SLE_ATTRS)
    data["ivaf"] = (("model", "time"), grid(column("ivaf_m3")), IVAF_ATTRS)
    data["ivaf_control"] = (("model", "time"), grid(column("ivaf_control_m3")), IVAF_ATTRS | {"long_name": "ice volume above floatation of the control run"})
    for name in SCALARS:
        found = {k: s[name] for k, s in scalars.items() if name in s}
        if found:
            attrs[name] = next(iter(found.values()))[1]
            data[name] = (("model", "time"), grid(lambda p: found[str(p)][0] if str(p) in found else None), attrs[name])
    rho = np.array([densities(m) for m in models]).reshape(len(models), 2)
    coords = dict(year_axis(years))
    coords |= {"model": ("model", np.array(models, dtype=str)), "institution": ("model", np.array([p.institution for p in partitions], dtype=str)),
               "rho_ice": ("model", rho[:, 0], {"units": "kg m-3", "long_name": "ice density the model used"}),
               "rho_ocean": ("model", rho[:, 1], {"units": "kg m-3", "long_name": "ocean water density the model used"})}
    reasons = {p.model_group: left_out[str(p)] for p in partitions if str(p) in left_out}
    ds_attrs = {"title": f"ISMIP6 Antarctic ice sheet: sea-level contribution of {experiment}, every model on ISMIP6 model years",
                "experiment": experiment, METHOD_ATTR: METHOD, LEFT_OUT_ATTR: dict(sorted(reasons.items())),
                "Conventions": "CF-1.8"} | experiment_attributes(experiment)
    return xr.Dataset(data, coords=coords, attrs=ds_attrs)
