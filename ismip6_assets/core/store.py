"""The Icechunk store: open it, write a partition in one commit (reading it: store_state.py).

Layout: ``{INST}_{MODEL}/{EXP}/{variable}`` groups. Each variable group records the source URL and
fingerprint it was built from; each experiment group records its institution/model/experiment and
the failures of its last commit, so a reader needs nothing but the store to know what it holds.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import icechunk
import zarr

from ismip6_assets.core.group_writer import write_groups
from ismip6_assets.core.locations import STORE_SETTING, ConfigError, Location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.view_writer import write_view
from ismip6_assets.core.views import view_group
from ismip6_assets.core.virtualize import FailureRecord, VirtualizedFile


# Handled by design, so silenced: the local-filesystem warning (one writer on local storage: the
# `icechunk_writer` pool), and the cache-size warnings, which fire once a snapshot exceeds a fifth of
# the snapshot cache; we size that cache to hold a few snapshots on purpose (settings.py,
# ISMIP6_SNAPSHOT_CACHE_NODES). The rest of Icechunk's warnings still reach the user.
icechunk.set_logs_filter("warn,icechunk_arrow_object_store=error,icechunk_storage::readback=error,icechunk::asset_manager=error")

BRANCH = "main"
# Manifests a commit writes at once (Icechunk's default: 1). On gs:// each is a round trip, so one at
# a time makes a partition's commit wait on one after another (bench/HISTORY.md).
COMMIT_MANIFEST_CONCURRENCY = 32
# Chunks the pipeline writes (coordinates, the views' time series, the sea-level ensembles) up to
# this size are kept inside their array's manifest (Icechunk's default: 512 bytes). A series of a
# file's years was a chunk object of its own: one more PUT at its commit and, for every reader, one
# more round trip after the manifest's (README, Performance).
INLINE_CHUNK_BYTES = 16 * 1024
FAILURES_ATTR = "ismip6_failures"
# Sub-folders the pipeline keeps beside the repository's own objects inside {STORE}.
SIDECAR_DIRS = ("index", "failures", "dagster", "catalog", "derived", ".ismip6-writer.lock")


DEFAULT_WRITER_WAIT_SECONDS = 300.0
# Icechunk keeps every snapshot a process opens, up to 500,000 nodes by default; each commit makes a
# new one, so a worker committing partition after partition held many whole-store snapshots. A
# writer reads two or three (the head it plans on and the one it commits): this keeps three
# full-archive snapshots (bench/throughput.py measures a worker's peak memory). Icechunk's own
# cache-size warning is silenced below, so an archive whose snapshot outgrows this needs
# ISMIP6_SNAPSHOT_CACHE_NODES raised.
DEFAULT_SNAPSHOT_CACHE_NODES = 150_000
# What Icechunk itself writes at a repository's root (spec versions 1 and 2).
ICECHUNK_OBJECTS = ("repo", "snapshots", "transactions", "manifests", "chunks", "refs", "config.yaml", "overwritten")


class StoreBusy(RuntimeError):
    """Another process on this machine is writing to the same local store."""


def _backoff(attempt: int) -> None:
    """Sleep before retry `attempt` (1, 2, ...): exponential, with jitter so that machines which
    collided once do not collide again in step."""
    time.sleep(random.uniform(0.05, 0.1 * 2**attempt))


@contextmanager
def writer_lock(store: Location, wait_seconds: float = DEFAULT_WRITER_WAIT_SECONDS) -> Iterator[None]:
    """One writer at a time per local store; a second one waits `wait_seconds`, then is refused.

    Local (``file://``) stores only: Icechunk's local-filesystem storage is not safe for concurrent
    commits (4 concurrent writers silently lost commits here), so the lock file lives inside the
    store and every process that writes there takes it. flock dies with its process, so a kill -9
    leaves no stale lock. Object stores (gs://) take no lock: writers on any machine meet through
    Icechunk's conditional writes, conflict detection and rebase (`commit_partition`; README,
    "Commit coordination across machines").
    """
    path = store.writer_lock_path
    if path is None:
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreBusy(
                        f"another process is writing to {store.url}, and a local store takes one writer at a time "
                        f"(lock {path}); try again when it is done, or put the store on gs:// for several writers"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def _storage(store: Location) -> icechunk.Storage:
    return store.icechunk_storage()


def _container(source: Location) -> icechunk.VirtualChunkContainer:
    return source.virtual_chunk_container()


def virtual_chunk_credentials(source: Location) -> dict:
    # Local files: LocalFileSystemAccess, not None (deprecated in Icechunk 2.3).
    return icechunk.containers_credentials({source.prefix_url: source.virtual_chunk_credentials()})


# Repository objects by (store, source), per process: Icechunk caches snapshots and manifests in
# the object, so reusing it spares a partition's state read the snapshot's decoding, which grows with
# the store; a pipeline run opens the store several times per partition.
# Sessions still read the branch head afresh, so commits from other processes are seen.
_repositories: dict[tuple[str, str, bool, int], icechunk.Repository] = {}


def open_repository(
    store: Location, source: Location, writable: bool = True, snapshot_cache_nodes: int = DEFAULT_SNAPSHOT_CACHE_NODES
) -> icechunk.Repository:
    """Open (or create) the repository at `store`, authorised to read virtual chunks of `source`.

    `writable=False` (read-only commands) never creates it nor saves its config: no repository
    there is a `ConfigError`.
    """
    key = (store.url, source.prefix_url, writable, snapshot_cache_nodes)
    cached = _repositories.get(key)
    # A local store folder removed since (a user's rm -r, tests) is seen at once; an object-store
    # repository is not deleted under a running pipeline, and checking cost a round trip per call.
    if cached is not None and (store.local_dir is None or icechunk.Repository.exists(_storage(store))):
        return cached
    repo = _open_repository(store, source, writable, snapshot_cache_nodes)
    _repositories[key] = repo
    return repo


def _stored_config(source: Location) -> icechunk.RepositoryConfig:
    """What the repository records for every reader: the source's virtual chunk container only.

    Our process's snapshot cache size stays out of it: persisted, it made every plain
    ``Repository.open`` of a large store print Icechunk's cache-size WARN (the cache read from the
    store holds fewer nodes than one snapshot), while readers need Icechunk's own default.
    """
    config = icechunk.RepositoryConfig.default()
    config.set_virtual_chunk_container(_container(source))
    return config


def _process_config(source: Location, snapshot_cache_nodes: int) -> icechunk.RepositoryConfig:
    config = _stored_config(source)
    config.caching = icechunk.CachingConfig(num_snapshot_nodes=snapshot_cache_nodes)
    config.inline_chunk_threshold_bytes = INLINE_CHUNK_BYTES
    # A commit writes one manifest per array it touched (~4 a file); Icechunk writes them one at a
    # time by default, one round trip each on object storage. See COMMIT_MANIFEST_CONCURRENCY.
    config.manifest = icechunk.ManifestConfig(max_concurrent_manifest_fetches_during_commit=COMMIT_MANIFEST_CONCURRENCY)
    return config


def repository_exists(store: Location, setting: str = STORE_SETTING) -> bool:
    """Whether an Icechunk repository is at `store` (a location that cannot hold one: `ConfigError`)."""
    return _repository_exists(store, setting)


def _repository_exists(store: Location, setting: str) -> bool:
    if store.local_dir is not None:  # Icechunk answers a plain file on the path with a 50-line error
        path = store.local_dir
        while not os.path.exists(path):
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise ConfigError(f"{setting}={store.url}: {path} is a file, not a folder: point it at an Icechunk repository or a new location")
    try:
        return icechunk.Repository.exists(_storage(store))
    except icechunk.IcechunkError as exc:
        raise ConfigError(f"{setting}={store.url}: cannot read it ({str(exc).strip().splitlines()[0]})") from None


def check_store(store: Location, setting: str = STORE_SETTING, must_exist: bool = False) -> None:
    """A store location that cannot work fails here in one line naming `setting`: a plain file,
    a folder of something else, or (`must_exist`) no repository at all. Nothing is written.

    A folder holding only Icechunk's own objects is a repository another machine is creating
    (Icechunk writes its first snapshot before the ``repo`` object that makes it exist): not foreign.
    """
    if _repository_exists(store, setting):
        return
    if must_exist:
        raise ConfigError(f"{setting}={store.url}: no Icechunk repository there (nothing to compare; `ismip6 run` creates one)")
    if store.exists():
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(store.fs_path, detail=False)]
        foreign = [name for name in names if name not in SIDECAR_DIRS and name not in ICECHUNK_OBJECTS]
        if foreign:
            raise ConfigError(
                f"{setting}={store.url} is a non-empty folder that is not an Icechunk repository "
                f"(found {foreign[0]!r}); point it at an empty or new location"
            )


# Tries of create-or-open: each lost race means another machine's repository now exists (or its
# config was saved), so the next try opens it; a few cover machines starting at the same moment.
OPEN_ATTEMPTS = 6


def _open_repository(store: Location, source: Location, writable: bool, snapshot_cache_nodes: int) -> icechunk.Repository:
    """Create-or-open, retried: several machines may start on a new store at once.

    `Repository.create` is not safe concurrently (its docstring says so; `open_or_create` only
    wraps the same race): the losers' create fails with a ConflictError (``repo info object was
    updated after this session started``), and a loser that looked between the winner's first
    snapshot and its ``repo`` object saw a half-made repository. A lost race is retried with backoff
    and jitter, and the retry finds the winner's repository and opens it.
    """
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            return _open_or_create_once(store, source, writable, snapshot_cache_nodes)
        except icechunk.ConflictError as exc:  # another writer created the repository or saved its config first
            if attempt == OPEN_ATTEMPTS:
                reason = str(exc).strip().splitlines()[0]
                raise ConfigError(f"{STORE_SETTING}={store.url}: could not create or open it in {attempt} tries, other writers kept winning: {reason}") from None
            _backoff(attempt)
    raise AssertionError("unreachable")


def _open_or_create_once(store: Location, source: Location, writable: bool, snapshot_cache_nodes: int) -> icechunk.Repository:
    storage = _storage(store)
    credentials = virtual_chunk_credentials(source)
    if _repository_exists(store, STORE_SETTING):
        stored = icechunk.Repository.fetch_config(storage)
        if writable and (stored is None or source.prefix_url not in (stored.virtual_chunk_containers or {})):
            # so readers of the store learn the new source container
            icechunk.Repository.open(storage, config=_stored_config(source), authorize_virtual_chunk_access=credentials).save_config()
        return icechunk.Repository.open(storage, config=_process_config(source, snapshot_cache_nodes), authorize_virtual_chunk_access=credentials)
    check_store(store, must_exist=not writable)  # raises for a location that must not be created
    repo = icechunk.Repository.create(storage, config=_stored_config(source), authorize_virtual_chunk_access=credentials, check_clean_root=False)
    return repo.reopen(config=_process_config(source, snapshot_cache_nodes), authorize_virtual_chunk_access=credentials)


def commit_message(partition: PartitionKey, written: list[str], removed: list[str], view=None) -> str:
    parts = []
    if written:
        parts.append(f"Added {len(written)} datasets: {', '.join(written)}")
    if removed:
        parts.append(f"Removed {len(removed)} datasets: {', '.join(removed)}")
    if view is not None:
        years = f", years {view.years[0]}-{view.years[-1]}" if len(view.years) else ""
        parts.append(f"view {len(view.fields)} variables{years}")
    return "; ".join(parts) or f"Updated failure records of {partition.group}"


COMMIT_ATTEMPTS = 6


def _delete_view(root: zarr.Group, partition: PartitionKey) -> None:
    """Remove the partition's view, and its model's folder under ``combined/`` once empty."""
    group = view_group(partition)
    if group in root:
        del root[group]
    parent = group.rsplit("/", 1)[0]
    if parent in root and not list(root[parent].group_keys()):
        del root[parent]
        if not list(root[parent.split("/")[0]].group_keys()):
            del root[parent.split("/")[0]]


def commit_partition(
    repo: icechunk.Repository,
    partition: PartitionKey,
    write: list[VirtualizedFile],
    remove: list[str],
    failures: list[FailureRecord],
    remove_partition: bool = False,
    rebuild_view: bool = False,
    lock: Callable[[], AbstractContextManager] = nullcontext,
    replan: Callable[[icechunk.Session], Any] | None = None,  # -> reconcile.CommitPlan | None (reconcile imports this module)
) -> tuple[str | None, str]:
    """The plan (`write` ... `rebuild_view`) in one commit under `lock` (`writer_lock`: local
    stores only); return (snapshot id, message), (None, "") when there was nothing to change.

    `replan(session)`, when given, plans from the partition's state in the session the commit is
    built in (reconcile.replan gives it), so the plan is always made at the head it commits on: a
    `CommitPlan` (``write``, ``remove``, ``failures``, ``remove_partition``, ``rebuild_view``)
    replaces the one passed, and None (another writer already did the work, between the caller's
    plan and this session) means no commit, so that work is neither redone nor undone. Without
    `replan`, the given plan is committed as it is: for callers whose writes do not depend on what
    the store holds.

    Icechunk rebases onto disjoint commits itself (`_commit`). Two writers that create the same
    parent group (sibling experiments of a new model, or the root of a new store) or write the same
    partition conflict and the rebase fails; then the commit is tried again in a new session at the
    new head, planned again there. Backoff with jitter between tries.
    """
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            with lock():
                if replan is not None:
                    written = write_replanned(repo, partition, replan)
                else:
                    written = write_partition(repo.writable_session(BRANCH), partition, write, remove, failures, remove_partition, rebuild_view)
                # Nothing is visible on the branch until the commit lands: a crash leaves the last commit intact.
                return (None, "") if written is None else (commit_written(written), written.message)
        except icechunk.ConflictError as exc:  # RebaseFailedError is a subclass
            if attempt == COMMIT_ATTEMPTS:
                raise RuntimeError(f"{partition}: commit conflicted {attempt} times with concurrent writers: {exc}") from exc
            _backoff(attempt)
    raise AssertionError("unreachable")


@dataclass
class WrittenPartition:
    """A partition's changes written into `session`, not yet committed."""

    session: icechunk.Session
    message: str
    metadata: dict | None = None


def write_replanned(repo: icechunk.Repository, partition: PartitionKey, replan: Callable[[icechunk.Session], Any]) -> WrittenPartition | None:
    """The partition planned by `replan` in a session at the branch head now and written there,
    uncommitted; None when the plan or the session says there is nothing to change."""
    session = repo.writable_session(BRANCH)
    plan = replan(session)
    if plan is None:
        return None
    return write_partition(session, partition, plan.write, plan.remove, plan.failures, plan.remove_partition, plan.rebuild_view)


def commit_written(written: WrittenPartition) -> str:
    """Commit what `write_partition` wrote (rebased onto other writers' commits); the snapshot id."""
    return _commit(written.session, written.message, written.metadata)


def write_partition(
    session: icechunk.Session,
    partition: PartitionKey,
    write: list[VirtualizedFile],
    remove: list[str],
    failures: list[FailureRecord],
    remove_partition: bool = False,
    rebuild_view: bool = False,
) -> WrittenPartition | None:
    """Write, replace and remove a partition's groups and rebuild its view in `session`, uncommitted;
    None when there is nothing to change.

    The view (views.py) is rebuilt whenever a group changes, or when `rebuild_view` says the stored
    one is missing or stale.
    """
    root = zarr.open_group(session.store, mode="a", zarr_format=3)
    if remove_partition:
        if partition.group not in root:
            return None
        del root[partition.group]
        if not list(root[partition.model_group].group_keys()):
            del root[partition.model_group]
        _delete_view(root, partition)
        return WrittenPartition(session, f"Removed partition {partition}: its archive folder is gone")
    exp = root.require_group(partition.group)
    exp.attrs.update(institution=partition.institution, model_name=partition.model, experiment=partition.experiment)
    removed = [variable for variable in remove if variable in exp]
    for variable in removed:
        del exp[variable]
    for vf in write:
        if vf.variable in exp:
            del exp[vf.variable]
    rebuild_view = rebuild_view or bool(write) or bool(removed)
    if rebuild_view:
        _delete_view(root, partition)
    write_groups(session.store, [(vf.dataset, vf.group) for vf in write])
    view = None
    if rebuild_view:
        root.require_group(view_group(partition).rsplit("/", 1)[0])  # combined/INST_MODEL, for the view's group
        view = write_view(session.store, partition, write)
        if view is None:
            _delete_view(root, partition)  # no variable group left: no view, and no empty parent
    new_failures = json.dumps([f.to_dict() for f in failures], sort_keys=True)
    if exp.attrs.get(FAILURES_ATTR, "[]") != new_failures:
        exp.attrs[FAILURES_ATTR] = new_failures
    if not session.has_uncommitted_changes:
        return None
    message = commit_message(partition, [vf.group for vf in write], [partition.variable_group(v) for v in remove], view)
    metadata = {"partition": str(partition), "written": len(write), "removed": len(remove), "failures": len(failures),
                "view_variables": len(view.fields) if view else 0}
    return WrittenPartition(session, message, metadata)


def _commit(session: icechunk.Session, message: str, metadata: dict | None = None) -> str:
    # Another writer's commit since the session began is rebased onto when it touched other nodes
    # (disjoint partitions: only this commit's own manifests are written again); a conflict raises.
    return session.commit(message, metadata=metadata, rebase_with=icechunk.ConflictDetector(), rebase_tries=20)
