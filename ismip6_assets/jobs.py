from datetime import timedelta

import dagster as dg

from ismip6_assets.maintenance import maintain_store
from ismip6_assets.resources import ArchiveResource
from ismip6_assets.settings import snapshot_retention
from ismip6_assets.store import writer_lock

# "Materialize this partition" in one click: the three assets and their check, per partition.
materialize_partition_job = dg.define_asset_job(
    "materialize_partition",
    selection=dg.AssetSelection.assets("file_index", "virtual_dataset", "icechunk_commit"),
    description="Index, virtualize and commit one model/experiment, then reconcile it.",
    # All steps in the run's own process: ~3.5 s of overhead per run through the daemon instead of
    # ~7 s with a process per step (measured here). The `icechunk_writer` pool is enforced by the
    # run queue and the in-process executor alike, and the store's writer lock backs it up.
    executor_def=dg.in_process_executor,
)

# The catalog after commits: launched by `ismip6 run` when it committed, and by the eager automation.
refresh_catalog_job = dg.define_asset_job(
    "refresh_catalog",
    selection=dg.AssetSelection.assets("store_catalog", "sea_level"),
    description="Bring {STORE}/catalog (parquet and STAC) to the store's head.",
    executor_def=dg.in_process_executor,
)


class StoreMaintenanceConfig(dg.Config):
    """Launchpad: ``ops: expire_and_collect: config: retention_days``; unset, ISMIP6_SNAPSHOT_RETENTION_DAYS."""

    retention_days: float | None = None


@dg.op(name="expire_and_collect", pool="icechunk_writer", description="Expire snapshots older than the retention and collect unreferenced objects.")
def store_maintenance_op(context: dg.OpExecutionContext, config: StoreMaintenanceConfig, archive: ArchiveResource) -> dg.Output[dict]:
    """Wiring for `maintenance.maintain_store`: what it removed goes in the run's metadata."""
    retention = timedelta(days=config.retention_days) if config.retention_days is not None else snapshot_retention()
    with writer_lock(archive.store):  # no commit in flight while objects are collected
        report = maintain_store(archive.repository(), retention)
    context.log.info(f"expired {report.expired} snapshots, deleted {report.deleted.get('bytes_deleted', 0):,} bytes; {len(report.tags)} tags kept")
    return dg.Output(report.metadata(), metadata={**report.metadata(), "tags": dg.MetadataValue.json(report.tags)})


# Off until someone turns its schedule on (Automation → store_maintenance_schedule): expiring
# history is a decision about the store, not a side effect of installing the code.
@dg.job(
    name="store_maintenance",
    description="Expire snapshots older than ISMIP6_SNAPSHOT_RETENTION_DAYS and garbage-collect what no branch or tag needs; tags stay.",
    executor_def=dg.in_process_executor,
)
def store_maintenance_job() -> None:
    store_maintenance_op()


store_maintenance_schedule = dg.ScheduleDefinition(
    job=store_maintenance_job, cron_schedule="0 3 * * 0", default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly store maintenance (Sunday 03:00); stopped until turned on.",
)
