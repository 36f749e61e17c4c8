"""The one `Definitions` of ismip6_assets."""

import warnings

import dagster as dg

from ismip6_assets.defs.assets import file_index, icechunk_commit, ice_volume, sea_level, store_catalog, virtual_dataset
from ismip6_assets.defs.checks import reconciliation
from ismip6_assets.defs.io_managers import StorePickleIOManager
from ismip6_assets.defs.jobs import materialize_partition_job, refresh_catalog_job, store_maintenance_job, store_maintenance_schedule
from ismip6_assets.defs.resources import ArchiveResource, archive_resource_from_environment
from ismip6_assets.defs.sensors import archive_sensor


def build_resources(archive: ArchiveResource) -> dict:
    resources = {"archive": archive, "store_io_manager": StorePickleIOManager(archive=archive)}
    if archive.gcs is not None:  # dagster-gcp's client, shared with the archive's gs:// listings
        resources["gcs"] = archive.gcs
    return resources


ASSETS = [file_index, virtual_dataset, icechunk_commit, ice_volume]  # partitioned, batched into runs by the backfill policy
CATALOG_ASSETS = [store_catalog, sea_level]  # unpartitioned, downstream of every partition's commit
CHECKS = [reconciliation]


def _with_code_references(assets: list) -> list:
    """The UI's links from each asset to its source file; the metadata class is beta in 1.13."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.with_source_code_references(assets)


def build_definitions(archive: ArchiveResource | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=_with_code_references(ASSETS + CATALOG_ASSETS),
        asset_checks=CHECKS,
        jobs=[materialize_partition_job, refresh_catalog_job, store_maintenance_job],
        schedules=[store_maintenance_schedule],
        sensors=[archive_sensor],
        resources=build_resources(archive or archive_resource_from_environment()),
        # Every run's steps in the run's process, backfills' runs (Dagster's implicit asset job) too.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
