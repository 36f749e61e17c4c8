from datetime import timedelta

import dagster as dg

from ismip6_assets.core.maintenance import maintain_store
from ismip6_assets.defs.resources import ArchiveResource

# "Materialize this partition" in one click: the three assets and their check, per partition.
materialize_partition_job = dg.define_asset_job(
    "materialize_partition",
    selection=dg.AssetSelection.assets("file_index", "virtual_dataset", "icechunk_commit", "ice_volume"),
    description="Index, virtualize and commit models/experiments (one commit each), then reconcile each and compute its ice volume.",
    # All steps in the run's own process: a process per step would pay the imports again for each
    # (README, Performance). The `icechunk_writer` pool is enforced by the run queue and the
    # in-process executor alike.
    executor_def=dg.in_process_executor,
)

# The catalog and the sea-level products of the store's head, on their own (a backfill selects them
# after its commits; this job is for the UI's launchpad and for in-process runs).
refresh_catalog_job = dg.define_asset_job(
    "refresh_catalog",
    selection=dg.AssetSelection.assets("store_catalog", "sea_level"),
    description="Bring {STORE}/catalog (parquet and STAC) and the sea-level products to the store's head.",
    executor_def=dg.in_process_executor,
)


class StoreMaintenanceConfig(dg.Config):
    """Launchpad: ``ops: expire_and_collect: config: retention_days``; unset, ISMIP6_SNAPSHOT_RETENTION_DAYS."""

    retention_days: float | None = None


@dg.op(name="expire_and_collect", pool="icechunk_writer", description="Expire snapshots older than the retention and collect unreferenced objects.")
def store_maintenance_op(context: dg.OpExecutionContext, config: StoreMaintenanceConfig, archive: ArchiveResource) -> dg.Output[dict]:
    """Wiring for `maintenance.maintain_store`: what it removed goes in the run's metadata."""
    retention = timedelta(days=config.retention_days) if config.retention_days is not None else archive.settings.snapshot_retention
    with archive.writer_lock():  # no commit in flight on this machine while objects are collected
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
