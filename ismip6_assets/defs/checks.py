"""The reconciliation check: does the store hold exactly what the archive holds, now?"""

import warnings
from typing import Literal

import dagster as dg

from ismip6_assets.defs.assets.icechunk_commit import icechunk_commit
from ismip6_assets.defs.assets.metadata import markdown
from ismip6_assets.defs.assets.file_index import listings
from ismip6_assets.defs.partitions import model_experiment_partitions_def
from ismip6_assets.core.executors import map_in_order, partitions_at_once
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.reconcile import store_diff
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.core.store import BRANCH
from ismip6_assets.core.store_state import read_partition_state
from ismip6_assets.core.verify import DEFAULT_SAMPLE_BUDGET_BYTES, DEFAULT_SAMPLE_VARIABLES, SamplePolicy, repair_hint, verify_partition

SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}


class ReconciliationConfig(dg.Config):
    """How deep the check looks (launchpad: ``ops: icechunk_commit_reconciliation: config``)."""

    # sample: on every partition, one chunk (the last) of up to `sample_variables` variables within
    # `sample_budget_bytes` (store read plus source read), rotating with the store's snapshot;
    # always: first, middle and last chunk of every array; never: fingerprints only.
    deep: Literal["sample", "always", "never"] = "sample"
    sample_variables: int = DEFAULT_SAMPLE_VARIABLES
    sample_budget_bytes: int = DEFAULT_SAMPLE_BUDGET_BYTES
    chunks_per_array: int = 3

    def policy(self) -> SamplePolicy:
        return SamplePolicy(self.deep, self.sample_variables, self.sample_budget_bytes, self.chunks_per_array)


def _reconciliation(context: dg.AssetCheckExecutionContext, config: ReconciliationConfig, archive: ArchiveResource):
    """Compares the store with a fresh listing of the partition's archive folder, and reads a sample.

    ERROR when a group is missing, extra or stale, when a sampled chunk does not read the source's
    values (compared by position), when a sampled group's time does not decode to dates in
    1850–2200 or its x/y are not the EPSG:3031 grid in metres, when the sample read nothing;
    WARN when only recorded failures remain (or a skip-list entry no longer matches its file); the
    table lists each offending file so the dashboard says what to fix.

    Non-blocking, deliberately: it runs after the commit has landed and nothing is downstream of
    `icechunk_commit`, so blocking would stop nothing; it would only fail the run and hide that
    the commit succeeded. A WARN (a known-bad source file) is a steady state, not a run failure.
    The ERROR result is what the sensor and `ismip6 run`'s exit code act on.

    A run over several partitions gives one result per partition: Dagster 1.13 takes a check
    result's partition from the run's single partition key, so each is logged as an
    `AssetCheckEvaluation` naming its partition, and the check's output is yielded once after them.
    """
    keys = list(context.partition_keys)
    repo = archive.repository()
    session = repo.readonly_session(BRANCH)  # every partition's state and sample read from one snapshot
    found = listings(archive, keys)

    def evaluate(key: str) -> dg.AssetCheckEvaluation:
        return _evaluate(repo, session, archive, PartitionKey.parse(key), found[key].rows, config)

    # Side by side on gs:// (reads only; logged here, in order, as each is ready). Every Icechunk
    # call below lets the GIL go while storage answers (core/nonblocking.py): one that kept it hung
    # runs reading side by side (earth-mover/icechunk#563).
    at_once = partitions_at_once(archive.store, archive.source)
    for key, evaluation in zip(found, map_in_order(evaluate, found, at_once)):
        context.op_execution_context.log_event(evaluation)
        context.log.info(f"{key}: {evaluation.description}")
    yield dg.Output(None, output_name=context.op_execution_context.op_def.output_defs[0].name)


def _evaluate(repo, session, archive: ArchiveResource, partition: PartitionKey, rows, config: ReconciliationConfig) -> dg.AssetCheckEvaluation:
    state = read_partition_state(repo, partition, session=session)
    diff = store_diff(partition, rows, state)
    verified = verify_partition(repo, archive.source, state, diff.ok, config.policy(), session=session)
    status = "ERROR" if verified.findings else diff.status
    return dg.AssetCheckEvaluation(
        asset_key=icechunk_commit.key,
        check_name="reconciliation",
        partition=str(partition),
        passed=status == "OK",
        blocking=False,
        severity=SEVERITY.get(status, dg.AssetCheckSeverity.WARN),
        metadata={
            **diff.counts(),
            "status": status,
            "bad_refs": len(verified.findings),
            "deep_mode": config.deep,
            "deep_groups": verified.groups,
            "deep_chunks": verified.chunks,
            "deep_bytes": dg.MetadataValue.int(verified.bytes_read),
            "deep_budget_bytes": dg.MetadataValue.int(config.sample_budget_bytes),
            "deep_arrays": verified.candidates,
            "findings": markdown(diff.rows() + verified.findings),
            **({"deep_sample": markdown(verified.read)} if verified.read else {}),
        },
        description=f"{partition}: {status}"
        + (" (deep verification off)" if config.deep == "never" else f" ({verified.chunks} chunks, {verified.bytes_read:,} bytes read)")
        + (f". {hint}" if (hint := repair_hint(verified.findings)) else ""),
    )


with warnings.catch_warnings():
    # Partitioned checks are a preview in Dagster 1.13; we rely on it knowingly, once, here.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    reconciliation = dg.asset_check(
        asset=icechunk_commit, name="reconciliation", partitions_def=model_experiment_partitions_def, blocking=False
    )(_reconciliation)
