"""Headless runs: every partition through Dagster in one process, and the archive-wide reconcile.

Each partition is one in-process Dagster run (~80 ms of overhead), so the run history, asset
materializations and check results land in the instance exactly as from the UI, without a
process launch per partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from ismip6_assets.definitions import ASSETS, CHECKS, build_resources
from ismip6_assets.index import list_archive
from ismip6_assets.locations import Location
from ismip6_assets.partitions import model_experiment_partitions_def
from ismip6_assets.paths import PartitionKey
from ismip6_assets.redact import redact
from ismip6_assets.reconcile import StoreDiff, partition_diff
from ismip6_assets.resources import ArchiveResource
from ismip6_assets.sensors import run_tags
from ismip6_assets.store import open_repository, stored_partitions


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


def all_partitions(source: Location, store: Location) -> list[str]:
    """Partitions in the archive now, plus partitions the store holds whose folder is gone."""
    listed = set(list_archive(source).partitions)
    stored = {str(k) for k in stored_partitions(open_repository(store, source))}
    return sorted(listed | stored)


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


def run_partition(archive: ArchiveResource, instance: dg.DagsterInstance, key: str, log_level: str = "WARNING") -> PartitionOutcome:
    start = time.perf_counter()
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=key,
        instance=instance,
        resources=build_resources(archive),
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
    return outcome


def _root_message(error) -> str:
    """The innermost cause: Dagster wraps the asset's own exception in a step-execution error."""
    while error.cause is not None:
        error = error.cause
    return redact(error.message.strip().splitlines()[-1])


def _findings(metadata) -> list[dict]:
    counts = {k: v.value for k, v in metadata.items() if k in ("missing", "extra", "stale", "failed", "skipped")}
    return [{"category": k, "item": str(n)} for k, n in counts.items() if n]


def run_archive(
    archive: ArchiveResource, instance: dg.DagsterInstance, progress: Callable[[int, int, PartitionOutcome], None] | None = None
) -> list[PartitionOutcome]:
    keys = all_partitions(archive.source, archive.store)
    register_partitions(instance, keys)
    outcomes = []
    for i, key in enumerate(keys, start=1):
        outcomes.append(run_partition(archive, instance, key))
        if progress:
            progress(i, len(keys), outcomes[-1])
    return outcomes


def reconcile_archive(source: Location, store: Location, progress: Callable[[int, int, StoreDiff], None] | None = None) -> list[StoreDiff]:
    repo = open_repository(store, source)
    keys = all_partitions(source, store)
    diffs = []
    for i, key in enumerate(keys, start=1):
        diffs.append(partition_diff(source, store, PartitionKey.parse(key), repo=repo)[1])
        if progress:
            progress(i, len(keys), diffs[-1])
    return diffs
