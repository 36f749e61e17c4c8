"""Headless runs: every partition that needs it through Dagster, and the archive-wide reconcile.

Each partition is one in-process Dagster run, so the run history, asset materializations and check
results land in the instance exactly as from the UI, without a process launch per partition.

Measured on the full-shape benchmark archive (bench/throughput.py: 439 partitions, 10,034 files,
2 cores), what makes the whole-archive run fast:

- **One listing and one store read first** (`plan_archive`: ~0.5 s for the whole archive with the
  saved store state at the head, ~2.5 s without; see store_state.py) instead of a listing and three
  state reads per partition. Partitions the store already matches get no run at all, so a refresh
  after one changed file runs one partition, not 439 (each run costs ~0.35 s of CPU even with nothing
  to do), and `reconcile_archive` is that plan alone. The run ends by bringing the saved state to the
  new head, so the next plan starts from it.
- **Partitions in parallel in persistent worker processes** (settings.PARTITION_WORKERS_ENV, default one more
  than CPUs): each worker is forked once from a server that imported Dagster and VirtualiZarr
  once (`_worker_context`) and then runs partition after partition in-process. Everything per partition parallelizes (HDF5 parsing holds
  a process-wide lock, so threads would not), while each commit still runs alone under the store's
  writer lock (`store.writer_lock`) and is still one commit per partition. A worker's memory is its
  imports, one partition's virtual datasets (a few kB a file) and Icechunk's snapshots of the whole
  store (a bounded few: settings.SNAPSHOT_CACHE_ENV).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

import dagster as dg

from ismip6_assets.definitions import ASSETS, CATALOG_ASSETS, CHECKS, build_resources
from ismip6_assets.executors import ExecutorSpec, shutdown_shared
from ismip6_assets.index import list_archive
from ismip6_assets.jobs import materialize_partition_job
from ismip6_assets.locations import Location
from ismip6_assets.partitions import model_experiment_partitions_def
from ismip6_assets.paths import PartitionKey
from ismip6_assets.reconcile import StoreDiff, partition_diffs
from ismip6_assets.redact import redact
from ismip6_assets.resources import ArchiveResource
from ismip6_assets.sensors import run_tags
from ismip6_assets.settings import Settings, adopt_environment, current, environment, fork_server_environment, install
from ismip6_assets.store import open_repository
from ismip6_assets.store_state import load_store_state, read_store_state

# A worker pays its imports once (2-4 s of CPU); a partition costs ~1.4 s. Fewer runs go in-process.
POOL_MIN_PARTITIONS = 8


@dataclass
class PartitionOutcome:
    partition: str
    status: str  # reconciliation: OK / WARN / ERROR, or FAILED when the run itself failed
    files: int = 0
    written: int = 0
    removed: int = 0
    failures: int = 0
    commit_id: str = ""
    findings: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    ran: bool = True  # False: the store already matched the archive, so no run was needed


def plan_archive(source: Location, store: Location, read_only: bool = False) -> dict[str, StoreDiff]:
    """Every partition's `StoreDiff` from one listing of the archive and one read of the store.

    Partitions in the archive now, plus partitions the store holds whose folder is gone.
    `read_only`: the repository must exist and nothing is written (not even the saved state).
    """
    states = read_store_state(open_repository(store, source, writable=not read_only), store, save=not read_only)
    return {key: diff for key, (_, _, diff) in partition_diffs(list_archive(source).rows, states).items()}


def register_partitions(instance: dg.DagsterInstance, keys: list[str]) -> None:
    known = set(instance.get_dynamic_partitions(model_experiment_partitions_def.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(model_experiment_partitions_def.name, new)


def _metadata_value(result: dg.ExecuteInProcessResult, asset: str, key: str, default=0):
    for mat in result.asset_materializations_for_node(asset):
        if key in mat.metadata:
            return mat.metadata[key].value
    return default


_jobs: dict[str, dg.JobDefinition] = {}


def _partition_job(archive: ArchiveResource) -> dg.JobDefinition:
    """`materialize_partition`, the job the UI and the sensor launch (so headless runs show under
    it, not ``__ASSET_JOB``), resolved once per resource configuration and process.

    `dg.materialize` builds Definitions and the job on each call: ~30 ms of CPU per partition here.
    """
    key = repr(archive)
    if key not in _jobs:
        if len(_jobs) >= 8:
            _jobs.clear()
        defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[materialize_partition_job], resources=build_resources(archive))
        _jobs[key] = defs.resolve_job_def(materialize_partition_job.name)
    return _jobs[key]


def run_partition(archive: ArchiveResource, instance: dg.DagsterInstance, key: str, log_level: str = "WARNING") -> PartitionOutcome:
    start = time.perf_counter()
    result = _partition_job(archive).execute_in_process(
        partition_key=key,
        instance=instance,
        raise_on_error=False,
        tags=run_tags(PartitionKey.parse(key)),
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )
    outcome = PartitionOutcome(partition=key, status="FAILED", seconds=time.perf_counter() - start)
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        reason = _root_message(failure.step_failure_data.error) if failure and failure.step_failure_data.error else "run failed"
        outcome.findings = [{"category": "run_failed", "item": reason}]
        return outcome
    outcome.files = _metadata_value(result, "file_index", "files")
    outcome.written = _metadata_value(result, "icechunk_commit", "groups_written")
    outcome.removed = _metadata_value(result, "icechunk_commit", "groups_removed")
    outcome.failures = _metadata_value(result, "icechunk_commit", "failures")
    outcome.commit_id = _metadata_value(result, "icechunk_commit", "commit_id", "")
    for evaluation in result.get_asset_check_evaluations():
        outcome.status = "OK" if evaluation.passed else evaluation.severity.value
        outcome.findings = _findings(evaluation.metadata)
    failed = _metadata_value(result, "icechunk_commit", "failure_table", None)
    outcome.findings += _failed_files([r.data for r in getattr(failed, "records", None) or []])
    return outcome


def _failed_files(records: list[dict]) -> list[dict]:
    """One finding per file that could not be stored: its URL and one-line reason."""
    return [{"category": "failed", "item": r["url"], "reason": r.get("error", "")} for r in records]


def refresh_catalog(archive: ArchiveResource, instance: dg.DagsterInstance) -> bool:
    """The `store_catalog` asset once after a run's commits (one refresh, not one per commit)."""
    from ismip6_assets.jobs import refresh_catalog_job

    defs = dg.Definitions(assets=ASSETS + CATALOG_ASSETS, jobs=[refresh_catalog_job], resources=build_resources(archive))
    result = defs.resolve_job_def(refresh_catalog_job.name).execute_in_process(instance=instance, raise_on_error=False)
    return result.success


def _root_message(error) -> str:
    """The innermost cause's first line: Dagster wraps the asset's own exception in a step error,
    and Icechunk's multi-line errors name the failing object on their first line."""
    while error.cause is not None:
        error = error.cause
    lines = [line.strip() for line in error.message.splitlines() if line.strip(" |")]
    return redact(unquote(lines[0])[:500]) if lines else "run failed"


def _findings(metadata) -> list[dict]:
    # Failed files are listed one by one from the commit's failure table (`_failed_files`).
    counts = {k: v.value for k, v in metadata.items() if k in ("missing", "extra", "stale", "view_behind", "skipped", "duplicate", "stale_skip_entries", "bad_refs")}
    findings = [{"category": k, "item": str(n)} for k, n in counts.items() if n]
    if "findings" in metadata and (counts.get("bad_refs") or any(counts.get(k) for k in ("missing", "extra", "stale", "view_behind", "duplicate", "stale_skip_entries"))):
        findings.append({"category": "details", "item": str(metadata["findings"].value)})
    return findings


def _unchanged(diff: StoreDiff) -> PartitionOutcome:
    counts = diff.counts()
    findings = [{"category": k, "item": str(counts[k])} for k in ("skipped", "stale_skip_entries") if counts[k]]
    findings += [{"category": "duplicate", "item": u} for u in diff.duplicate]
    findings += _failed_files(diff.failed)
    return PartitionOutcome(diff.partition, diff.status, files=diff.indexed, failures=len(diff.failed), findings=findings, ran=False)


def partition_workers(n_runs: int) -> int:
    """How many worker processes run partitions: 1 (in-process) for few runs or when configured;
    else one more than CPUs: commits take turns under the writer lock, and on gs:// a partition
    also waits on round trips, so with one worker a CPU the CPUs sit idle meanwhile (measured on
    local disk and on gs://: README, Performance). Forked workers cost little to start."""
    configured = current().partition_workers
    workers = configured or (os.cpu_count() or 1) + 1
    if not configured and n_runs < POOL_MIN_PARTITIONS:
        return 1
    return max(1, min(workers, n_runs))


def run_archive(
    archive: ArchiveResource,
    instance: dg.DagsterInstance,
    progress: Callable[[int, int, PartitionOutcome], None] | None = None,
    force: bool = False,
    workers: int | None = None,
) -> list[PartitionOutcome]:
    """Run every partition the store is behind on (every partition with `force`); outcomes by key.

    `progress(i, n, outcome)` is called as partitions finish (in parallel runs: completion order).
    """
    diffs = plan_archive(archive.source, archive.store)
    keys = list(diffs)
    register_partitions(instance, keys)
    todo = [k for k in keys if force or diffs[k].behind]
    outcomes = {k: _unchanged(d) for k, d in diffs.items() if k not in todo}
    done = 0

    def report(outcome: PartitionOutcome) -> None:
        nonlocal done
        outcomes[outcome.partition] = outcome
        done += 1
        if progress:
            progress(done, len(keys), outcome)

    for key in keys:
        if key not in todo:
            report(outcomes[key])
    workers = workers or partition_workers(len(todo))
    try:
        if workers <= 1:
            for key in todo:
                report(run_partition(archive, instance, key))
        else:
            _run_in_workers(archive, instance, todo, workers, report)
    finally:
        # A file pool started by a large partition ends with the run: `ismip6` leaves through
        # os._exit (no atexit), and orphaned pool processes would hold its stdout open.
        shutdown_shared()
    if todo:  # bring the saved store state to the new head now, so the next plan starts from it
        with ThreadPoolExecutor(1, thread_name_prefix="ismip6-state") as pool:  # beside the catalog's run
            saved = pool.submit(load_store_state, open_repository(archive.store, archive.source), archive.store)
            refresh_catalog(archive, instance)
            saved.result()
    return [outcomes[k] for k in keys]


def _run_in_workers(archive: ArchiveResource, instance: dg.DagsterInstance, keys: list[str], workers: int, report) -> None:
    """Partitions in `workers` persistent processes. A process that dies (a native crash while
    reading a hostile file) loses only its partition's run: the unfinished partitions are retried
    once in a fresh pool, and what dies again is reported FAILED."""
    ref = None if instance.is_ephemeral else instance.get_ref()
    remaining = list(keys)
    for attempt in (1, 2):
        pool = ProcessPoolExecutor(
            min(workers, len(remaining)),
            mp_context=_worker_context(),
            initializer=_init_worker,
            initargs=(_resource_fields(archive), ref, current(), environment(), os.getcwd()),
        )
        broken = []
        try:
            futures = {pool.submit(_run_in_worker, key): key for key in remaining}
            for future in as_completed(futures):
                try:
                    report(future.result())
                except BrokenProcessPool as exc:
                    _kill_survivors(pool)
                    if attempt == 2:
                        report(PartitionOutcome(futures[future], "FAILED", findings=[{"category": "run_failed", "item": f"worker process died: {exc}"}]))
                    else:
                        broken.append(futures[future])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if not broken:
            return
        remaining = sorted(broken)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a server process that imported the pipeline once.

    Not plain fork: the parent runs Tokio (Icechunk, obstore) and event-loop threads, which a forked
    child would inherit dead. The fork server is a fresh interpreter that only imports, and only
    what starts no thread (`worker_preload`), so its children start with Dagster, xarray and
    VirtualiZarr loaded instead of importing them each (~3.5 s of CPU a worker with spawn, on the
    machine's 2 cores at once). It starts once per parent process and serves every later pool.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ismip6_assets.worker_preload"])
    with fork_server_environment():
        multiprocessing.forkserver.ensure_running()
    return context


def _kill_survivors(pool: ProcessPoolExecutor) -> None:
    """SIGKILL the workers still alive in a broken pool, so that its shutdown cannot hang.

    CPython 3.12's executor asks the survivors to stop with SIGTERM and then joins them, but a
    worker that has run Dagster keeps SIGTERM mapped to `default_int_handler`: the survivor prints
    a KeyboardInterrupt and never exits, and `run_archive` hung for good (seen with one worker
    killed mid-partition). `_processes` is the executor's own table of its worker processes.
    """
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.kill()


_worker: dict = {}


def _resource_fields(resource: dg.ConfigurableResource) -> tuple[type, dict]:
    """A resource as (class, field values), nested resources too: resources do not pickle."""
    fields = {}
    for name in type(resource).model_fields:
        value = getattr(resource, name)
        fields[name] = _resource_fields(value) if isinstance(value, dg.ConfigurableResource) else value
    return type(resource), fields


def _from_fields(cls_and_fields: tuple[type, dict]) -> dg.ConfigurableResource:
    cls, fields = cls_and_fields
    return cls(**{k: _from_fields(v) if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], type) else v for k, v in fields.items()})


def _init_worker(archive_fields: tuple[type, dict], ref, settings: Settings, environ: dict[str, str], cwd: str) -> None:
    # A fork server's child starts with the server's environment and folder, from when it started.
    adopt_environment(environ)
    os.chdir(cwd)
    if settings.executor.kind == "processes":  # partitions are the parallel unit here; no pool per worker
        settings = replace(settings, executor=ExecutorSpec("serial"))
    install(settings)  # the parent's checked settings, not a second read of the environment
    _worker["archive"] = _from_fields(archive_fields)
    _worker["instance"] = dg.DagsterInstance.from_ref(ref) if ref is not None else dg.DagsterInstance.ephemeral()


def _run_in_worker(key: str) -> PartitionOutcome:
    instance = _worker["instance"]
    if instance.is_ephemeral:  # the parent's ephemeral instance is not shared: register here too
        register_partitions(instance, [key])
    return run_partition(_worker["archive"], instance, key)


def reconcile_archive(source: Location, store: Location, progress: Callable[[int, int, StoreDiff], None] | None = None) -> list[StoreDiff]:
    """Every partition compared with a fresh listing: one listing, one read of the store; read-only."""
    diffs = list(plan_archive(source, store, read_only=True).values())
    for i, diff in enumerate(diffs, start=1):
        if progress:
            progress(i, len(diffs), diff)
    return diffs
