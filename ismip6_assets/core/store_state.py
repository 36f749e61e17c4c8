"""What the store holds, read from the store itself: per partition, and for the whole store.

Each variable group records the source URL and fingerprint it was built from, each experiment
group its partition's names and current failures, and each view the fingerprints of the groups it
was built from (store.py writes them in the partition's commit), so the state of a partition is a
few group documents, and the state of the store all of them.

Reading all of them grows with the store (one document a group, and the full archive has ten
thousand), and the runner, the sensor and ``ismip6 reconcile`` each need the whole store. A snapshot never
changes, so its state is kept beside the store (``{STORE}/index/store-state.json``) under its
snapshot id: when the branch head is that snapshot, the file *is* the store's state; when the head
has moved on, Icechunk's diff between the two snapshots names every group that changed and only
those partitions are read again. A missing, unreadable or unrelated file (the branch was reset to
a snapshot that is not a descendant) means a full read. Either way the result is the store at its
head, never a saved answer taken on trust.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass, field

import icechunk
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ismip6_assets.core.executors import map_in_order
from ismip6_assets.core.locations import Location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.store import BRANCH, FAILURES_ATTR
from ismip6_assets.core.views import SOURCES_ATTR, VIEW_ROOT, experiment_of_view, view_group
from ismip6_assets.core.virtualize import SOURCE_FINGERPRINT_ATTR, SOURCE_URL_ATTR

STATE_CACHE_VERSION = 2  # 2: the view's sources
# Beyond this many changed partitions (8, or a tenth of the store), one concurrent full read beats
# reading them one by one, a round trip each.
INCREMENTAL_MAX_SHARE = 0.1
INCREMENTAL_MIN = 8


@dataclass
class StoredGroup:
    variable: str
    group: str
    url: str
    fingerprint: str


@dataclass
class PartitionState:
    """What the store holds for one partition on the branch head."""

    groups: dict[str, StoredGroup] = field(default_factory=dict)  # by variable
    failures: list[dict] = field(default_factory=list)
    exists: bool = False
    # The view's record of what it was built from (variable -> fingerprint); None: no view stored.
    view_sources: dict[str, str] | None = None


def _open_group(store, path: str):
    try:
        return zarr.open_group(store, path=path, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return None


_PARTITION_ATTRS = ("institution", "model_name", "experiment")


def _partition_state(exp_attrs) -> PartitionState:
    return PartitionState(exists=True, failures=json.loads(exp_attrs.get(FAILURES_ATTR, "[]")))


def _stored_group(partition: PartitionKey, variable: str, attrs) -> StoredGroup:
    return StoredGroup(
        variable=variable,
        group=partition.variable_group(variable),
        url=str(attrs.get(SOURCE_URL_ATTR, "")),
        fingerprint=str(attrs.get(SOURCE_FINGERPRINT_ATTR, "")),
    )


def _state_of(partition: PartitionKey, exp: zarr.Group, store) -> PartitionState:
    state = _partition_state(exp.attrs)
    for name, group in exp.groups():
        state.groups[name] = _stored_group(partition, name, group.attrs)
    view = _open_group(store, view_group(partition))
    if view is not None:
        _add_view(state, view.attrs)
    return state


def _add_view(state: PartitionState, attrs) -> None:
    state.view_sources = {str(k): str(v) for k, v in dict(attrs.get(SOURCES_ATTR, {})).items()}


def _read_experiment(store, path: str) -> tuple[PartitionKey, PartitionState] | None:
    """The partition recorded in the experiment group at `path`, or None if there is none."""
    exp = _open_group(store, path)
    if exp is None or not set(_PARTITION_ATTRS) <= set(exp.attrs):
        return None
    key = PartitionKey(*(exp.attrs[a] for a in _PARTITION_ATTRS))
    return key, _state_of(key, exp, store)


def read_partition_state(
    repo: icechunk.Repository | None, partition: PartitionKey, branch: str = BRANCH, session: icechunk.Session | None = None
) -> PartitionState:
    """The partition's state on the branch head, or in `session` (one session serving several
    reads saves the branch look-up each would make: a round trip on an object store; `repo` may
    then be None)."""
    store = (session or repo.readonly_session(branch=branch)).store
    exp = _open_group(store, partition.group)
    return PartitionState() if exp is None else _state_of(partition, exp, store)


def read_partition_states(session: icechunk.Session, partitions: list[PartitionKey], at_once: int = 1) -> dict[PartitionKey, PartitionState]:
    """Each partition's state in `session`, `at_once` read side by side (`executors.partitions_at_once`)."""
    return dict(zip(partitions, map_in_order(lambda p: read_partition_state(None, p, session=session), partitions, at_once), strict=True))


def _read_all(repo: icechunk.Repository, head: str) -> dict[str, tuple[PartitionKey, PartitionState]]:
    """Every partition by experiment group path, from all group documents read concurrently.

    The groups are those Icechunk's diff from the repository's first (empty) snapshot to `head`
    reports as new: one diff of the snapshots' trees, where walking the hierarchy with zarr
    (``members``) lists group after group, many times slower. Experiment groups are mapped back to their partition through their
    recorded names (the group path ``INST_MODEL`` alone is ambiguous).
    """
    first = list(repo.ancestry(snapshot_id=head))[-1].id
    if first == head:  # a new repository: nothing committed yet
        return {}
    paths = [p.strip("/") for p in repo.diff(from_snapshot_id=first, to_snapshot_id=head).new_groups]
    # experiment and variable groups, and views (combined/INST_MODEL/EXP)
    paths = sorted(p for p in paths if p.count("/") in (1, 2) and p.split("/")[0] != VIEW_ROOT or experiment_of_view(p) and p.count("/") == 2)
    attrs = dict(zip(paths, sync(_group_attributes(repo.readonly_session(snapshot_id=head).store, paths))))
    by_path: dict[str, tuple[PartitionKey, PartitionState]] = {}
    for path in paths:
        if path.count("/") == 1 and set(_PARTITION_ATTRS) <= set(attrs[path]):
            by_path[path] = (PartitionKey(*(attrs[path][a] for a in _PARTITION_ATTRS)), _partition_state(attrs[path]))
    for path in paths:
        parent, _, name = path.rpartition("/")
        experiment = experiment_of_view(path)
        if experiment is not None:
            if experiment in by_path:
                _add_view(by_path[experiment][1], attrs[path])
        elif path.count("/") == 2 and parent in by_path:
            key, state = by_path[parent]
            state.groups[name] = _stored_group(key, name, attrs[path])
    return by_path


async def _group_attributes(store, paths: list[str]) -> list[dict]:
    prototype = default_buffer_prototype()
    documents = await asyncio.gather(*(store.get(f"{p}/zarr.json", prototype) for p in paths))
    return [json.loads(d.to_bytes()).get("attributes", {}) if d is not None else {} for d in documents]


def _changed_experiment_paths(repo: icechunk.Repository, since: str, head: str) -> set[str]:
    """Experiment group paths (``INST_MODEL/EXP``) under any node changed between two snapshots,
    plus the model paths (``INST_MODEL``) of changed model groups."""
    diff = repo.diff(from_snapshot_id=since, to_snapshot_id=head)
    paths = set(diff.new_groups) | set(diff.deleted_groups) | set(diff.updated_groups)
    paths |= set(diff.new_arrays) | set(diff.deleted_arrays) | set(diff.updated_arrays) | set(diff.updated_chunks)
    paths |= {p for pair in diff.moved_nodes for p in pair}  # (from, to) pairs
    return {experiment_of_view(p) or "/".join(p.strip("/").split("/")[:2]) for p in paths if p.strip("/") and p.strip("/") != VIEW_ROOT}


@dataclass
class StoreStateRead:
    """A read of the whole store's state, and how it was read (for tests and the benchmark)."""

    snapshot: str
    by_path: dict[str, tuple[PartitionKey, PartitionState]]
    how: str  # "cached": the file was for the head | "incremental": changed partitions re-read | "full"
    partitions_read: int = 0
    entries: dict[str, dict] = field(default_factory=dict)  # the file's form of `by_path`, built once per partition

    @property
    def states(self) -> dict[str, PartitionState]:
        return {str(key): state for key, state in self.by_path.values()}


def state_cache_path(store: Location) -> Location:
    return store.join("index", "store-state.json")


def load_store_state(repo: icechunk.Repository, store: Location | None = None, save: bool = True) -> StoreStateRead:
    """The state of every partition at the branch head; with `store`, through the snapshot-keyed file
    (brought to the head unless not `save`: read-only commands write nothing)."""
    head = repo.lookup_branch(BRANCH)
    session_store = repo.readonly_session(snapshot_id=head).store
    cached = _load_cache(store) if store is not None else None
    result = None
    if cached is not None and cached.snapshot == head:
        result = cached
    elif cached is not None:
        try:
            changed = _changed_experiment_paths(repo, cached.snapshot, head)
        except icechunk.IcechunkError:  # not an ancestor (branch reset), or expired: read everything
            changed = None
        if changed is not None and len(changed) <= max(INCREMENTAL_MIN, INCREMENTAL_MAX_SHARE * len(cached.by_path)):
            kept = [p for p in cached.by_path if p not in changed and p.split("/")[0] not in changed]
            result = StoreStateRead(head, {p: cached.by_path[p] for p in kept}, "incremental", len(changed), {p: cached.entries[p] for p in kept})
            for path in sorted(p for p in changed if "/" in p):
                found = _read_experiment(session_store, path)
                if found is not None:
                    result.by_path[path], result.entries[path] = found, _entry(*found)
    if result is None:
        by_path = _read_all(repo, head)
        result = StoreStateRead(head, by_path, "full", len(by_path), {p: _entry(*v) for p, v in by_path.items()})
    if save and store is not None and result.how != "cached":
        _save_cache(store, result)
    return result


def read_store_state(repo: icechunk.Repository, store: Location | None = None, save: bool = True) -> dict[str, PartitionState]:
    """`PartitionState` of every partition the store holds at the branch head, by partition key."""
    return load_store_state(repo, store, save).states


def _entry(key: PartitionKey, state: PartitionState) -> dict:
    groups = {v: [g.url, g.fingerprint] for v, g in state.groups.items()}
    return {"key": str(key), "failures": state.failures, "groups": groups, "view": state.view_sources}


def _from_json(doc: dict) -> StoreStateRead:
    by_path = {}
    for path, entry in doc["partitions"].items():
        key = PartitionKey.parse(entry["key"])
        groups = {v: StoredGroup(v, key.variable_group(v), url, fp) for v, (url, fp) in entry["groups"].items()}
        view = entry["view"]
        by_path[path] = (key, PartitionState(groups=groups, failures=list(entry["failures"]), exists=True, view_sources=None if view is None else dict(view)))
    return StoreStateRead(str(doc["snapshot"]), by_path, "cached", entries=doc["partitions"])


def _load_cache(store: Location) -> StoreStateRead | None:
    """The saved state, or None when there is none or it is not one this version wrote."""
    target = state_cache_path(store)
    try:
        with store.fs.open(target.fs_path, "rb") as f:
            doc = json.loads(f.read())
        if doc.get("version") != STATE_CACHE_VERSION:
            return None
        return _from_json(doc)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _save_cache(store: Location, read: StoreStateRead) -> None:
    """Write the state file; a reader never sees half of it. Best effort: the store is the truth."""
    target = state_cache_path(store)
    doc = {"version": STATE_CACHE_VERSION, "snapshot": read.snapshot, "partitions": read.entries}
    data = json.dumps(doc, separators=(",", ":")).encode()
    try:
        store.put_atomic(target, data)
    except OSError:
        pass
