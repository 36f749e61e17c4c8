"""Each partition's ice volume above floatation and scalar series, computed where its commit is made.

The `ice_volume` asset computes them per partition in the partition's own run, right after its
commit (`refresh_partition_volumes`), so the partitions of a backfill's runs are read side by side
instead of one after another in the single run of the unpartitioned `sea_level` after every commit.
Each result is saved beside the store, ``{STORE}/derived/volumes/{INST}_{MODEL}/{EXP}.json``, with
the keys it was computed from (`volume_key`, `view_key`: the fingerprints of its fields' and
scalars' sources); `sea_level_store.refresh_sea_level` takes a saved result only when both keys
match what the store holds now, and reads the partition itself otherwise.

Knows nothing of Dagster; the store location and the repository are arguments.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import dask
import icechunk
import numpy as np
import pandas as pd

from ismip6_assets.core.executors import map_in_order
from ismip6_assets.core.locations import Location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.sea_level import FIELDS, METHOD_VERSION, SCALARS, MissingFields, PartitionVolume, densities, ivaf_graph, ivaf_series
from ismip6_assets.core.sea_level import block_fetches, open_view, view_codecs
from ismip6_assets.core.sea_level_ensemble import scalar_graph, scalar_series
from ismip6_assets.core.store import BRANCH
from ismip6_assets.core.store_state import PartitionState, read_partition_states
from ismip6_assets.core.virtualize import one_line

VOLUMES_RELPATH = "derived/volumes"


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def volume_key(partition: PartitionKey, state: PartitionState) -> str:
    """What a partition's volumes depend on: its four fields' sources, the densities, the method."""
    sources = state.view_sources or {}
    return _digest([METHOD_VERSION, densities(partition.model_group), {f: sources.get(f) for f in FIELDS}])


def view_key(state: PartitionState) -> str:
    """What a partition's ensemble entry depends on: whether it has a view, and the sources of its
    four fields and its ISMIP6 scalars. Not its other variables: a re-delivered velocity file
    changes nothing the ensemble holds, so it rewrites no ensemble and reads no source."""
    sources = state.view_sources
    return _digest([sources is not None, {v: (sources or {}).get(v) for v in (*FIELDS, *SCALARS)}])


def partition_volume(session: icechunk.Session, partition: PartitionKey, state: PartitionState, scheduler=None) -> PartitionVolume:
    """The partition's volumes per model year and its scalar series, read through the store in one
    Dask graph (every chunk once, a block's chunks at once) on `scheduler`; never raises for missing data."""
    volume = PartitionVolume(partition, volume_key(partition, state), view_key(state), None, recomputed=True, scalars={})
    if state.view_sources is None:
        volume.reason = "the store holds no view of this partition"
        return volume
    try:
        view = open_view(session, partition, None)
        scalars = scalar_graph(view)
        try:
            graph = ivaf_graph(view, *densities(partition.model_group))
        except MissingFields as exc:  # its scalars still enter the ensemble
            graph, volume.reason = None, str(exc)
        with block_fetches():
            graph, scalars = dask.compute(graph, scalars, scheduler=scheduler)
        volume.scalars = scalar_series(view, scalars)
        if graph is not None:
            volume.ivaf = ivaf_series(view, graph)
            if volume.ivaf.empty:
                volume.ivaf, volume.reason = None, "no model year has lithk, sftgif and sftgrf all present"
    except Exception as exc:  # noqa: BLE001 - a source that cannot be read leaves this partition out, not the refresh
        volume.ivaf, volume.scalars = None, None
        volume.reason, volume.transient = f"its fields could not be read through the store: {one_line(exc)}", True
    return volume


# --- saved beside the store ---------------------------------------------------------------------


def volume_path(store: Location, partition: PartitionKey) -> Location:
    return store.join(VOLUMES_RELPATH, partition.model_group, f"{partition.experiment}.json")


def _series(series: pd.Series) -> dict:
    return {"years": [int(y) for y in series.index], "values": [float(v) for v in series.to_numpy("float64")]}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def volume_document(volume: PartitionVolume, snapshot: str) -> bytes:
    """The saved form of a computed `volume` (JSON: floats as Python writes them, so they read back exactly)."""
    return json.dumps({
        "partition": str(volume.partition),
        "volume_key": volume.volume_key,
        "view_key": volume.view_key,
        "snapshot": snapshot,
        "reason": volume.reason,
        "ivaf_m3": None if volume.ivaf is None else _series(volume.ivaf),
        "scalars": {name: {**_series(series), "attrs": {k: _plain(v) for k, v in attrs.items()}} for name, (series, attrs) in (volume.scalars or {}).items()},
    }, sort_keys=True).encode()


def _from_document(partition: PartitionKey, doc: dict) -> PartitionVolume:
    def series(d: dict, name: str | None = None) -> pd.Series:
        return pd.Series(np.asarray(d["values"], "float64"), index=pd.Index(np.asarray(d["years"], "int64"), name="year"), name=name)

    ivaf = None if doc["ivaf_m3"] is None else series(doc["ivaf_m3"], "ivaf_m3")
    scalars = {name: (series(d), dict(d["attrs"])) for name, d in doc["scalars"].items()}
    return PartitionVolume(partition, doc["volume_key"], doc["view_key"], ivaf, doc["reason"], recomputed=True, scalars=scalars)


def saved_volumes(store: Location, states: dict[PartitionKey, PartitionState]) -> dict[PartitionKey, PartitionVolume]:
    """The saved results of these partitions that were computed from what the store holds now
    (both keys equal); one concurrent batch of reads on gs://. Absent, unreadable or out-of-date
    ones are left out: the caller reads those partitions itself."""
    if not states:
        return {}
    paths = {volume_path(store, p).fs_path: p for p in states}
    try:
        found = store.fs.cat(list(paths), on_error="omit")
    except (FileNotFoundError, OSError):
        return {}
    out = {}
    for path, data in found.items():
        partition = paths.get(path) or paths.get(path.removeprefix("/"))
        try:
            doc = json.loads(data)
            volume = _from_document(partition, doc)
        except (ValueError, KeyError, TypeError):
            continue
        state = states[partition]
        if volume.volume_key == volume_key(partition, state) and volume.view_key == view_key(state):
            out[partition] = volume
    return out


def refresh_partition_volumes(
    repo: icechunk.Repository, store: Location, partitions: Iterable[PartitionKey], scheduler=None, at_once: int = 1
) -> dict[PartitionKey, PartitionVolume]:
    """Each partition's volumes at the branch head, computed and saved unless the saved ones are
    current (those come back with ``recomputed=False``), `at_once` partitions read side by side
    (`executors.partitions_at_once`). A failed read is returned, not saved: the next refresh reads it again."""
    session = repo.readonly_session(BRANCH)
    partitions = list(partitions)
    states = read_partition_states(session, partitions, at_once)
    current = saved_volumes(store, states)
    for volume in current.values():
        volume.recomputed = False

    def compute(partition: PartitionKey) -> PartitionVolume:
        volume = partition_volume(session, partition, states[partition], scheduler)
        if not volume.transient:
            store.put_atomic(volume_path(store, partition), volume_document(volume, session.snapshot_id))
        return volume

    # Partitions read from threads once hung for good, a thread parked in Icechunk's
    # `PyStore.as_bytes` (the store pickled by Dask's tokenizing of `.chunk()`, which
    # `sea_level.time_blocks` no longer asks for) while the others waited (earth-mover/icechunk#563).
    todo = [p for p in states if p not in current]
    with block_fetches(), view_codecs():
        computed = dict(zip(todo, map_in_order(compute, todo, at_once), strict=True))
    return {p: current.get(p) or computed[p] for p in states}
