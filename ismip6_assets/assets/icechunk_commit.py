import dagster as dg
import pandas as pd

from ismip6_assets.assets.metadata import markdown
from ismip6_assets.failures import write_failures
from ismip6_assets.partitions import model_experiment_partitions_def
from ismip6_assets.paths import PartitionKey
from ismip6_assets.reconcile import commit_plan, store_diff
from ismip6_assets.resources import ArchiveResource
from ismip6_assets.store import commit_partition, read_partition_state, writer_lock
from ismip6_assets.virtualize import VirtualizationResult

WRITER_POOL = "icechunk_writer"


@dg.asset(
    partitions_def=model_experiment_partitions_def,
    group_name="ismip6",
    kinds={"icechunk"},
    owners=["team:ismip6"],
    pool=WRITER_POOL,
)
def icechunk_commit(
    context: dg.AssetExecutionContext, archive: ArchiveResource, file_index: pd.DataFrame, virtual_dataset: VirtualizationResult
) -> dg.MaterializeResult:
    """The partition's groups ``{INST}_{MODEL}/{EXP}/{variable}`` in the Icechunk store, one commit per run.

    Partitioned per model/experiment: one commit per partition keeps each delivery atomic.
    """
    partition = PartitionKey.parse(context.partition_key)
    repo = archive.repository()
    with writer_lock(archive.store):  # read-plan-commit as one step against other local writers
        diff = store_diff(partition, file_index, read_partition_state(repo, partition))
        plan = commit_plan(diff, virtual_dataset.files, virtual_dataset.failures)
        snapshot, message = commit_partition(repo, partition, plan.write, plan.remove, plan.failures, plan.remove_partition)
    failures_url = write_failures(archive.store, virtual_dataset.failures)
    context.log.info(f"{partition}: {message or 'nothing to commit'}")
    return dg.MaterializeResult(
        metadata={
            "commit_id": snapshot or "",
            "commit_message": message,
            "groups_written": len(plan.write),
            "groups_removed": len(plan.remove),
            "failures": len(plan.failures),
            "failures_log": dg.MetadataValue.path(failures_url) if failures_url else "",
            "failure_table": markdown([{"url": f.url, "error": f.error} for f in plan.failures]),
            "open_with_xarray": dg.MetadataValue.md(
                f"```python\nimport icechunk, xarray as xr\n# see README: open the repository at {archive.store.url}\n"
                f"ds = xr.open_zarr(repo.readonly_session('main').store, group='{partition.group}/<variable>', consolidated=False)\n```"
            ),
        }
    )
