"""The reconciliation check: does the store hold exactly what the archive holds, now?"""

import warnings

import dagster as dg

from ismip6_assets.assets.icechunk_commit import icechunk_commit
from ismip6_assets.assets.metadata import markdown
from ismip6_assets.partitions import model_experiment_partitions_def
from ismip6_assets.paths import PartitionKey
from ismip6_assets.reconcile import partition_diff
from ismip6_assets.resources import ArchiveResource

SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}


def _reconciliation(context: dg.AssetCheckExecutionContext, archive: ArchiveResource) -> dg.AssetCheckResult:
    """Compares the store with a fresh listing of the partition's archive folder.

    ERROR when a group is missing, extra or stale (or nothing was compared); WARN when only recorded
    failures remain; the table lists each offending file so the dashboard says what to fix.

    Non-blocking, deliberately: it runs after the commit has landed and nothing is downstream of
    `icechunk_commit`, so blocking would stop nothing; it would only fail the run and hide that
    the commit succeeded. A WARN (a known-bad source file) is a steady state, not a run failure.
    The ERROR result is what the sensor and `ismip6 run`'s exit code act on.
    """
    partition = PartitionKey.parse(context.partition_key)
    _, diff = partition_diff(archive.source, archive.store, partition)
    return dg.AssetCheckResult(
        passed=diff.status == "OK",
        severity=SEVERITY.get(diff.status, dg.AssetCheckSeverity.WARN),
        metadata={**diff.counts(), "status": diff.status, "findings": markdown(diff.rows())},
        description=f"{partition}: {diff.status}",
    )


with warnings.catch_warnings():
    # Partitioned checks are a preview in Dagster 1.13; we rely on it knowingly, once, here.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    reconciliation = dg.asset_check(
        asset=icechunk_commit, name="reconciliation", partitions_def=model_experiment_partitions_def, blocking=False
    )(_reconciliation)
