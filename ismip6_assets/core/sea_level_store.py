"""The sea-level products beside the store, kept current: ``{STORE}/derived/sea_level.parquet`` and
one inline ensemble dataset per experiment in the store at ``derived/ensemble/{EXP}``.

The table has one row per institution, model, experiment and ISMIP6 model year with the ice volume
above floatation (sea_level.py), its control run's, the sea-level contribution (empty for control
and historical runs, and where the control is missing) and the densities used. Its parquet schema
metadata records, per partition, the fingerprints its volume was computed from (the view's sources
of lithk/topg/sftgif/sftgrf, the densities, the method's version): a refresh recomputes only the
partitions whose key changed and rewrites only the ensembles of the experiments they enter (their
own, and the projections whose control they are), in one Icechunk commit. A partition without the
four fields is left out with its reason, recorded in the parquet and in the ensemble's attributes.

Knows nothing of Dagster; the store location and the repository are arguments.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import dask
import icechunk
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from ismip6_assets.core.experiments import experiment_attributes
from ismip6_assets.core.locations import Location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.partition_volumes import partition_volume, saved_volumes, view_key, volume_key
from ismip6_assets.core.sea_level import METHOD_VERSION, PartitionVolume, block_fetches, contribution, densities
from ismip6_assets.core.sea_level import open_view as _open_view
from ismip6_assets.core.sea_level_ensemble import (
    ENSEMBLE_ROOT, Scalars, ensemble_dataset, ensemble_group, scalar_graph, scalar_series, stored_scalars,
)
from ismip6_assets.core.store import BRANCH
from ismip6_assets.core.store_state import PartitionState, load_store_state

TABLE_RELPATH = "derived/sea_level.parquet"
COLUMNS = ["institution", "model", "experiment", "control_experiment", "year", "time", "ivaf_m3", "ivaf_control_m3", "sle_mm", "rho_ice", "rho_ocean"]
STATE_KEY = b"ismip6_sea_level"  # parquet schema metadata: what the table was computed from


def table_path(store: Location) -> Location:
    return store.join(TABLE_RELPATH)


@dataclass
class SeaLevelRefresh:
    """What a refresh did."""

    table: pd.DataFrame
    table_url: str
    snapshot: str  # the store's head after the refresh
    left_out: dict[str, str] = field(default_factory=dict)  # partition -> why it has no volume or no sea level
    recomputed: list[str] = field(default_factory=list)
    reused: int = 0
    from_partition_runs: int = 0  # of the recomputed, those whose volumes the `ice_volume` asset had saved
    ensembles_written: list[str] = field(default_factory=list)
    ensembles_removed: list[str] = field(default_factory=list)
    current: bool = False  # the saved table already described the head: nothing done


def empty_table() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    types = {c: "string" for c in COLUMNS[:4]} | {"year": "int64", "time": "datetime64[ns]"} | {c: "float64" for c in COLUMNS[6:]}
    return frame[COLUMNS].astype(types).reset_index(drop=True)


def read_table(store: Location) -> tuple[pd.DataFrame, dict]:
    """The saved table and what it was computed from (``{}`` when absent, unreadable or of another layout)."""
    try:
        with store.fs.open(table_path(store).fs_path, "rb") as f:
            table = pq.read_table(f)
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return empty_table(), {}
    state = (table.schema.metadata or {}).get(STATE_KEY)
    frame = table.to_pandas()
    if list(frame.columns) != COLUMNS or state is None:
        return empty_table(), {}
    return _typed(frame), json.loads(state)


def write_table(store: Location, frame: pd.DataFrame, state: dict) -> str:
    table = pa.Table.from_pandas(_typed(frame), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), STATE_KEY: json.dumps(state, sort_keys=True).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    target = table_path(store)
    store.put_atomic(target, buffer.getvalue())
    return target.url


def _cached_volume(partition: PartitionKey, state: PartitionState, previous: dict, saved: dict) -> PartitionVolume | None:
    """The saved volumes of `partition` when they were computed from what the store holds now.

    `previous`: the saved table's rows by (institution, model, experiment)."""
    entry = saved.get("partitions", {}).get(str(partition))
    if entry is None or entry.get("volume_key") != volume_key(partition, state) or entry.get("transient"):
        return None
    rows = previous.get((partition.institution, partition.model, partition.experiment), empty_table())
    ivaf = pd.Series(rows["ivaf_m3"].to_numpy(), index=pd.Index(rows["year"].to_numpy(), name="year"), name="ivaf_m3") if len(rows) else None
    if ivaf is None and entry.get("reason") is None:
        return None
    return PartitionVolume(partition, entry["volume_key"], view_key(state), ivaf, entry.get("reason"))


def control_of(experiment: str) -> str | None:
    """The control run of the experiment's ocean-melt family (experiments table), for projections only."""
    return experiment_attributes(experiment).get("control_experiment")


def sea_level_rows(volumes: dict[str, PartitionVolume]) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table's rows for every partition with volumes, and the reasons of those without sea level."""
    frames, left_out = [], {}
    for key, volume in sorted(volumes.items()):
        p = volume.partition
        if volume.ivaf is None:
            left_out[key] = volume.reason or "no ice volume"
            continue
        rho_ice, rho_ocean = densities(p.model_group)
        control = control_of(p.experiment)
        if control is None:
            rows = pd.DataFrame({"ivaf_m3": volume.ivaf, "ivaf_control_m3": np.nan, "sle_mm": np.nan})
        else:
            found = volumes.get(str(PartitionKey(p.institution, p.model, control)))
            rows, reason = contribution(volume.ivaf, found.ivaf if found else None, rho_ice)
            if reason is not None:
                why = f"its control {control} is not in the store" if found is None else found.reason and f"its control {control} has no volume: {found.reason}"
                left_out[key] = f"no sea level: {why or reason}"
        rows = rows.reset_index()
        rows["time"] = pd.to_datetime([f"{y + 1:04d}-01-01" for y in rows["year"]])  # the state at the end of the model year
        rows = rows.assign(institution=p.institution, model=p.model, experiment=p.experiment, control_experiment=control, rho_ice=rho_ice, rho_ocean=rho_ocean)
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True) if frames else empty_table()
    return _typed(frame.sort_values(["institution", "model", "experiment", "year"])), left_out


def _affected_experiments(changed: set[PartitionKey], experiments: set[str]) -> set[str]:
    """The experiments whose ensemble a change of these partitions alters: their own, and every
    projection whose control one of them is."""
    touched = {p.experiment for p in changed}
    return (touched & experiments) | {e for e in experiments if control_of(e) in touched}


def _ensemble_scalars(
    session: icechunk.Session, experiments: list[str], volumes: dict[str, PartitionVolume], before: dict, scheduler
) -> dict[str, Scalars]:
    """The scalar series of every partition of `experiments`: read with its fields when recomputed;
    else from the experiment's stored ensemble when its view is the one that ensemble was built from;
    else (a scalar source re-delivered, or an ensemble lost) read through the store again.

    Rebuilding an ensemble must not read every model's series from the sources again: with one chunk
    a step, that was most of a one-file refresh's source requests."""
    out: dict[str, Scalars] = {}
    for experiment in experiments:
        members = {k: v for k, v in volumes.items() if v.partition.experiment == experiment}
        stored = stored_scalars(session, experiment) if any(v.scalars is None for v in members.values()) else {}
        for key, volume in members.items():
            if volume.scalars is not None:
                out[key] = volume.scalars
            elif before.get(key, {}).get("view_key") == volume.view_key and volume.partition.model_group in stored:
                out[key] = stored[volume.partition.model_group]
            else:
                out[key] = _read_scalars(session, volume.partition, scheduler)
    return out


def _read_scalars(session: icechunk.Session, partition: PartitionKey, scheduler) -> Scalars:
    """The partition's scalar series through the store; none when its view or a source cannot be
    read (its fields could not be either: it is transient and read again next refresh)."""
    try:
        view = _open_view(session, partition, None)
        with block_fetches():
            (computed,) = dask.compute(scalar_graph(view), scheduler=scheduler)
    except Exception:  # noqa: BLE001 - one unreadable source leaves its series out, not the refresh
        return {}
    return scalar_series(view, computed)


def _stored_ensembles(session: icechunk.Session) -> set[str]:
    try:
        group = zarr.open_group(session.store, path=ENSEMBLE_ROOT, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return set()
    return set(group.group_keys())


def refresh_sea_level(
    repo: icechunk.Repository, store: Location, scheduler=None, lock: Callable[[], AbstractContextManager] = nullcontext
) -> SeaLevelRefresh:
    """Bring the table and the ensembles to the store's head; recompute only what changed.

    The ensembles are built first, then written in one commit on the branch, its session opened
    under `lock` (the store's `writer_lock`: local storage loses concurrent commits) and rebased
    onto other machines' commits (the paths are disjoint); then the table, which records that commit.
    `scheduler`: Dask's, for reading the fields (`executors.read_scheduler` of the executor setting;
    None: Dask's default threads).
    """
    head = repo.lookup_branch(BRANCH)
    previous, saved = read_table(store)
    if saved.get("snapshot") == head:
        return SeaLevelRefresh(previous, table_path(store).url, head, dict(saved.get("left_out", {})), reused=len(saved.get("partitions", {})), current=True)
    states = {str(k): (k, s) for k, s in load_store_state(repo, store).by_path.values()}
    session = repo.readonly_session(snapshot_id=head)
    volumes: dict[str, PartitionVolume] = {}
    previous = {key: rows for key, rows in previous.groupby(["institution", "model", "experiment"])}
    for key, (partition, state) in sorted(states.items()):
        cached = _cached_volume(partition, state, previous, saved)
        if cached is not None:
            volumes[key] = cached
    # What the partitions' own runs computed (the `ice_volume` asset), where still current; the rest is read here.
    fresh = saved_volumes(store, {p: s for k, (p, s) in states.items() if k not in volumes})
    for key, (partition, state) in sorted(states.items()):
        if key not in volumes:
            volumes[key] = fresh.get(partition) or partition_volume(session, partition, state, scheduler)
    table, left_out = sea_level_rows(volumes)
    before = saved.get("partitions", {})
    changed = {v.partition for k, v in volumes.items() if before.get(k, {}).get("view_key") != v.view_key or v.recomputed}
    changed |= {PartitionKey.parse(k) for k in before if k not in volumes}
    experiments = {v.partition.experiment for v in volumes.values()}
    stored = _stored_ensembles(session)
    write = sorted(_affected_experiments(changed, experiments) | (experiments - stored))
    remove = sorted(stored - experiments)
    snapshot = head
    if write or remove:

        scalars = _ensemble_scalars(session, write, volumes, before, scheduler)
        ensembles = {experiment: ensemble_dataset(experiment, table, volumes, left_out, scalars) for experiment in write}
        with lock():
            writable = repo.writable_session(BRANCH)
            root = zarr.open_group(writable.store, mode="a", zarr_format=3)
            for experiment in remove:
                del root[ensemble_group(experiment)]
            for experiment, dataset in ensembles.items():
                dataset.to_zarr(writable.store, group=ensemble_group(experiment), mode="w", zarr_format=3, consolidated=False)
            if writable.has_uncommitted_changes:
                message = f"Sea level: ensembles of {', '.join(write) or 'none'}" + (f"; removed {', '.join(remove)}" if remove else "")
                snapshot = writable.commit(message, rebase_with=icechunk.ConflictDetector(), rebase_tries=20)
    entries = {k: {"volume_key": v.volume_key, "view_key": v.view_key, "reason": v.reason, "transient": v.transient} for k, v in volumes.items()}
    url = write_table(store, table, {"snapshot": snapshot, "input_snapshot": head, "partitions": entries, "left_out": left_out, "method_version": METHOD_VERSION})
    return SeaLevelRefresh(
        table, url, snapshot, left_out, recomputed=sorted(k for k, v in volumes.items() if v.recomputed),
        reused=sum(not v.recomputed for v in volumes.values()), ensembles_written=write, ensembles_removed=remove,
        from_partition_runs=len(fresh),
    )
