"""Headless runs (`ismip6 run` / `reconcile`) on Dagster's own machinery.

`run_archive` plans from one listing of the archive and one read of the store, then hands the
partitions the store is behind on to Dagster as ONE backfill, exactly what the UI's "Materialize"
and `archive_sensor` create: the instance's run queue, run launcher, run monitoring and run retries
run it, the backfill policy batches partitions into runs (`partitions.PARTITIONS_PER_RUN`), and
`store_catalog` runs once after the commits. The daemon serving the instance runs the backfill (with
none, `daemon_process.running_daemon` starts one for the command). What `ismip6 run` prints comes
from the instance's event log: each partition's reconciliation result as it lands, and the commit's
materialization.

`in_process=True` executes the same job in this process instead, one partition after another
(Dagster's `execute_in_process`): for tests of the library through Dagster, never for the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, BACKFILL_ID_TAG, PARTITION_NAME_TAG, WILL_RETRY_TAG
from dagster._core.utils import make_new_backfill_id

from ismip6_assets.definitions import build_definitions
from ismip6_assets.core.index import list_archive
from ismip6_assets.defs.partitions import model_experiment_partitions_def
from ismip6_assets.core.reconcile import StoreDiff, partition_diffs
from ismip6_assets.core.redact import redact
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.defs.sensors import DERIVED_ASSETS, PARTITIONED_ASSETS
from ismip6_assets.cli.daemon_process import daemon_running
from ismip6_assets.core.store_state import read_store_state

COMMIT_ASSET = dg.AssetKey("icechunk_commit")
BACKFILL_ASSETS = [*PARTITIONED_ASSETS, *sorted(DERIVED_ASSETS, key=str)]  # what the sensor's backfills cover too
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
POLL_SECONDS = 0.5


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


def plan_archive(archive: ArchiveResource, read_only: bool = False) -> dict[str, StoreDiff]:
    """Every partition's `StoreDiff` from one listing of the archive and one read of the store.

    Partitions in the archive now, plus partitions the store holds whose folder is gone.
    `read_only`: the repository must exist and nothing is written (not even the saved state).
    """
    from ismip6_assets.core.store import open_repository

    repo = open_repository(archive.store, archive.source, writable=not read_only, snapshot_cache_nodes=archive.settings.snapshot_cache_nodes)
    states = read_store_state(repo, archive.store, save=not read_only)
    rows = list_archive(archive.source, skip_list=archive.skip_list_entries).rows
    return {key: diff for key, (_, _, diff) in partition_diffs(rows, states).items()}


def register_partitions(instance: dg.DagsterInstance, keys: list[str]) -> None:
    known = set(instance.get_dynamic_partitions(model_experiment_partitions_def.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(model_experiment_partitions_def.name, new)


def launch_backfill(instance: dg.DagsterInstance, archive: ArchiveResource, keys: list[str], title: str) -> str:
    """One backfill of `keys` (and the catalog after them), with `archive`'s settings as run config."""
    backfill_id = make_new_backfill_id()
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id,
        asset_graph=build_definitions(archive).resolve_asset_graph(),
        partition_names=keys,
        asset_selection=BACKFILL_ASSETS,
        backfill_timestamp=time.time(),
        tags={"ismip6/launched_by": title},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=f"{len(keys)} model/experiment partitions the store is behind on",
        run_config=archive.run_config(),
    )
    instance.add_backfill(backfill)
    return backfill_id


# --- what the event log says about each partition -------------------------------------------------


class DaemonGone(RuntimeError):
    """No daemon serves the instance any more while a command waits on its backfill."""


class BackfillWatch:
    """Each partition's outcome, read from the event log of a backfill's runs as they land."""

    def __init__(self, instance: dg.DagsterInstance, keys: list[str], backfill_id: str | None = None) -> None:
        self.instance, self.keys, self.backfill_id = instance, set(keys), backfill_id
        self.outcomes: dict[str, PartitionOutcome] = {}
        self._commits: dict[str, dict] = {}
        self._cursors: dict[str, str | None] = {}
        self._started = time.perf_counter()

    def runs(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: self.backfill_id})))

    def read(self, runs: list[dg.DagsterRun]) -> list[PartitionOutcome]:
        """New outcomes since the last call, in the order they landed."""
        new = []
        for run in runs:
            types = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
            connection = self.instance.get_records_for_run(run.run_id, cursor=self._cursors.get(run.run_id), of_type=types)
            self._cursors[run.run_id] = connection.cursor
            for record in connection.records:
                event = record.event_log_entry.dagster_event
                if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                    materialization = event.step_materialization_data.materialization
                    if materialization.asset_key == COMMIT_ASSET and materialization.partition in self.keys:
                        self._commits[materialization.partition] = {k: v.value for k, v in materialization.metadata.items()}
                else:
                    evaluation = event.asset_check_evaluation_data
                    if evaluation.partition in self.keys and evaluation.partition not in self.outcomes:
                        new.append(self._outcome(evaluation))
            if run.status in FINISHED and run.status != dg.DagsterRunStatus.SUCCESS and run.tags.get(WILL_RETRY_TAG) != "true":
                # A run Dagster retries gives its partitions' outcomes through the retry (same backfill).
                landed = set(self.outcomes) | {o.partition for o in new}
                new += [self._failed(key, run) for key in sorted(self.partitions_of(run) - landed)]
        for outcome in new:
            self.outcomes[outcome.partition] = outcome
        return new

    def partitions_of(self, run: dg.DagsterRun) -> set[str]:
        if PARTITION_NAME_TAG in run.tags:
            return {run.tags[PARTITION_NAME_TAG]} & self.keys
        start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
        if start is None:
            return set()
        ordered = self.instance.get_dynamic_partitions(model_experiment_partitions_def.name)
        if start not in ordered or end not in ordered:
            return set()
        return set(ordered[ordered.index(start) : ordered.index(end) + 1]) & self.keys

    def _outcome(self, evaluation) -> PartitionOutcome:
        metadata = {k: v.value for k, v in evaluation.metadata.items()}
        commit = self._commits.get(evaluation.partition, {})
        status = metadata.get("status") or ("OK" if evaluation.passed else evaluation.severity.value)
        failed = getattr(commit.get("failure_table"), "records", None) or []
        return PartitionOutcome(
            partition=evaluation.partition,
            status=status,
            files=commit.get("files", metadata.get("indexed", 0)),
            written=commit.get("groups_written", 0),
            removed=commit.get("groups_removed", 0),
            failures=commit.get("failures", 0),
            commit_id=commit.get("commit_id", ""),
            findings=findings(metadata) + failed_files([r.data for r in failed]),
            seconds=time.perf_counter() - self._started,
        )

    def _failed(self, key: str, run: dg.DagsterRun) -> PartitionOutcome:
        return PartitionOutcome(key, "FAILED", findings=[{"category": "run_failed", "item": f"run {run.run_id[:8]}: {run_failure(self.instance, run)}"}])


def run_settled(run: dg.DagsterRun) -> bool:
    """Finished, and not waiting for Dagster to launch its retry (a launched retry is a run of its own)."""
    return run.status in FINISHED and (run.tags.get(WILL_RETRY_TAG) != "true" or AUTO_RETRY_RUN_ID_TAG in run.tags)


def run_failure(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The first line of the innermost cause of the run's first step failure (or of the run's)."""
    types = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
    entries = [record.event_log_entry for record in instance.get_records_for_run(run.run_id, of_type=types).records]
    for entry in entries:
        error = getattr(entry.dagster_event.event_specific_data, "error", None)
        if error is None:
            continue
        while error.cause is not None:
            error = error.cause
        lines = [line.strip() for line in error.message.splitlines() if line.strip(" |")]
        if lines:
            return redact(unquote(lines[0])[:500])
    return redact(next((e.message for e in entries if e.message), f"run {run.status.value.lower()}"))


def findings(metadata: dict) -> list[dict]:
    # Failed files are listed one by one from the commit's failure table (`failed_files`).
    keys = ("missing", "extra", "stale", "view_behind", "skipped", "duplicate", "stale_skip_entries", "bad_refs")
    counts = {k: v for k, v in metadata.items() if k in keys}
    found = [{"category": k, "item": str(n)} for k, n in counts.items() if n]
    if "findings" in metadata and any(counts.get(k) for k in keys if k != "skipped"):
        found.append({"category": "details", "item": str(metadata["findings"])})
    return found


def failed_files(records: list[dict]) -> list[dict]:
    """One finding per file that could not be stored: its URL and one-line reason."""
    return [{"category": "failed", "item": r["url"], "reason": r.get("error", "")} for r in records]


def unchanged(diff: StoreDiff) -> PartitionOutcome:
    counts = diff.counts()
    found = [{"category": k, "item": str(counts[k])} for k in ("skipped", "stale_skip_entries") if counts[k]]
    found += [{"category": "duplicate", "item": u} for u in diff.duplicate]
    found += failed_files(diff.failed)
    return PartitionOutcome(diff.partition, diff.status, files=diff.indexed, failures=len(diff.failed), findings=found, ran=False)


# --- the whole archive --------------------------------------------------------------------------


def run_archive(
    archive: ArchiveResource,
    instance: dg.DagsterInstance,
    progress: Callable[[int, int, PartitionOutcome], None] | None = None,
    force: bool = False,
    in_process: bool = False,
) -> list[PartitionOutcome]:
    """Run every partition the store is behind on (every partition with `force`); outcomes by key.

    `progress(i, n, outcome)` is called as partitions finish (completion order).
    """
    diffs = plan_archive(archive)
    keys = list(diffs)
    register_partitions(instance, keys)
    todo = [k for k in keys if force or diffs[k].behind]
    outcomes = {k: unchanged(d) for k, d in diffs.items() if k not in todo}
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
    if todo and in_process:
        _execute_in_process(archive, instance, todo, report)
    elif todo:  # the daemon serving `instance` runs it (`daemon_process.running_daemon`)
        watch = BackfillWatch(instance, todo, launch_backfill(instance, archive, todo, "ismip6 run"))
        for outcome in _until_done(watch):
            report(outcome)
    return [outcomes[k] for k in keys]


DAEMON_SILENCE_SECONDS = 90


def _until_done(watch: BackfillWatch) -> Iterator[PartitionOutcome]:
    started = time.monotonic()
    while True:
        if time.monotonic() - started > DAEMON_SILENCE_SECONDS and not daemon_running(watch.instance, DAEMON_SILENCE_SECONDS):
            raise DaemonGone(
                f"the Dagster daemon of DAGSTER_HOME={watch.instance.root_directory} stopped answering; backfill "
                f"{watch.backfill_id} goes on when a daemon runs again (`ismip6-daemon run`)"
            )
        backfill = watch.instance.get_backfill(watch.backfill_id)
        runs = watch.runs()
        yield from watch.read(runs)
        settled = backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING)
        if settled and all(run_settled(r) for r in runs):
            yield from watch.read(watch.runs())
            for key in sorted(watch.keys - set(watch.outcomes)):
                outcome = PartitionOutcome(key, "FAILED", findings=[{"category": "run_failed", "item": f"backfill {backfill.status.value.lower()} without a result"}])
                watch.outcomes[key] = outcome
                yield outcome
            return
        time.sleep(POLL_SECONDS)


def _execute_in_process(archive: ArchiveResource, instance: dg.DagsterInstance, keys: list[str], report) -> None:
    for key in keys:
        report(run_partition(archive, instance, key))
    build_definitions(archive).resolve_job_def("refresh_catalog").execute_in_process(instance=instance, raise_on_error=False)


def run_partition(archive: ArchiveResource, instance: dg.DagsterInstance, key: str) -> PartitionOutcome:
    """One partition's `materialize_partition` run in this process (tests), its outcome as
    `ismip6 run` reports it."""
    register_partitions(instance, [key])
    job = build_definitions(archive).resolve_job_def("materialize_partition")
    started = time.perf_counter()
    result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False, tags={"ismip6/launched_by": "in_process"})
    new = BackfillWatch(instance, [key]).read([instance.get_run_by_id(result.run_id)])
    outcome = new[0] if new else PartitionOutcome(key, "FAILED", findings=[{"category": "run_failed", "item": "no reconciliation result"}])
    outcome.seconds = time.perf_counter() - started
    return outcome


def reconcile_archive(archive: ArchiveResource, progress: Callable[[int, int, StoreDiff], None] | None = None) -> list[StoreDiff]:
    """Every partition compared with a fresh listing: one listing, one read of the store; read-only."""
    diffs = list(plan_archive(archive, read_only=True).values())
    for i, diff in enumerate(diffs, start=1):
        if progress:
            progress(i, len(diffs), diff)
    return diffs

