"""The reconciliation check: does the store hold exactly what the archive holds, now?"""

import warnings
from typing import Literal

import dagster as dg

from ismip6_assets.assets.icechunk_commit import icechunk_commit
from ismip6_assets.assets.metadata import markdown
from ismip6_assets.index import list_archive
from ismip6_assets.partitions import model_experiment_partitions_def
from ismip6_assets.paths import PartitionKey
from ismip6_assets.reconcile import store_diff
from ismip6_assets.resources import ArchiveResource
from ismip6_assets.store_state import read_partition_state
from ismip6_assets.verify import REPAIR_HINT, verify_partition

SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}


class ReconciliationConfig(dg.Config):
    """How deep the check looks (launchpad: ``ops: icechunk_commit_reconciliation: config``)."""

    # auto: read sampled chunks of partitions with at most `deep_max_groups` groups; reading one
    # chunk per variable of a 30-variable partition on GCS is tens of MB, so big ones opt in.
    deep: Literal["auto", "always", "never"] = "auto"
    deep_max_groups: int = 10
    chunks_per_array: int = 3


def _reconciliation(context: dg.AssetCheckExecutionContext, config: ReconciliationConfig, archive: ArchiveResource) -> dg.AssetCheckResult:
    """Compares the store with a fresh listing of the partition's archive folder.

    ERROR when a group is missing, extra or stale, when a sampled chunk does not read the source's
    values, or when nothing was compared; WARN when only recorded failures remain; the table lists
    each offending file so the dashboard says what to fix.

    Non-blocking, deliberately: it runs after the commit has landed and nothing is downstream of
    `icechunk_commit`, so blocking would stop nothing; it would only fail the run and hide that
    the commit succeeded. A WARN (a known-bad source file) is a steady state, not a run failure.
    The ERROR result is what the sensor and `ismip6 run`'s exit code act on.
    """
    partition = PartitionKey.parse(context.partition_key)
    repo = archive.repository()
    state = read_partition_state(repo, partition)
    diff = store_diff(partition, list_archive(archive.source, partition).rows, state)
    deep = config.deep == "always" or (config.deep == "auto" and len(diff.ok) <= config.deep_max_groups)
    verified = verify_partition(repo, archive.source, state, diff.ok, config.chunks_per_array) if deep else None
    status = "ERROR" if verified and verified.findings else diff.status
    return dg.AssetCheckResult(
        passed=status == "OK",
        severity=SEVERITY.get(status, dg.AssetCheckSeverity.WARN),
        metadata={
            **diff.counts(),
            "status": status,
            "bad_refs": len(verified.findings) if verified else 0,
            "deep_groups": verified.groups if verified else 0,
            "deep_chunks": verified.chunks if verified else 0,
            "findings": markdown(diff.rows() + (verified.findings if verified else [])),
        },
        description=f"{partition}: {status}"
        + ("" if deep else " (deep verification off)")
        + (f". {REPAIR_HINT}" if verified and verified.findings else ""),
    )


with warnings.catch_warnings():
    # Partitioned checks are a preview in Dagster 1.13; we rely on it knowingly, once, here.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    reconciliation = dg.asset_check(
        asset=icechunk_commit, name="reconciliation", partitions_def=model_experiment_partitions_def, blocking=False
    )(_reconciliation)
