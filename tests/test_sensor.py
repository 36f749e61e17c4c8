"""`archive_sensor` evaluated on a real `DagsterInstance`, as the daemon evaluates it."""

from __future__ import annotations

import json
import time

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

from ismip6_assets.definitions import build_definitions
from ismip6_assets.cli.runs import BACKFILL_ASSETS
from ismip6_assets.defs.sensors import REQUEST_TAG, archive_sensor, requested_partitions

PARTITIONS = [
    "AWI/PISM1/ctrl_proj_std", "AWI/PISM1/exp05", "DOE/MALI/expA1", "ILTS_PIK/SICOPOLIS1/exp05", "ILTS_PIK/SICOPOLIS1/hist_std", "UCIJPL/ISSM/exp13", "ULB/fETISh_16km/expA6",
]


def evaluate(archive, instance, cursor):
    # A context manager: ArchiveResource holds a nested resource that must be set up and torn down.
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"archive": archive}) as context:
        return archive_sensor(context)


def record_backfill(archive, instance, keys, request, status):
    """A backfill as the daemon makes it from the sensor's request, in the state `status`."""
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=f"b{int(time.time() * 1e6)}", asset_graph=build_definitions(archive).resolve_asset_graph(), partition_names=keys,
        asset_selection=BACKFILL_ASSETS, backfill_timestamp=time.time(), tags={REQUEST_TAG: request}, dynamic_partitions_store=instance,
        all_partitions=False, title=None, description=None, run_config=None,
    )
    instance.add_backfill(backfill.with_status(status))


def test_an_empty_store_gets_every_partition_in_one_backfill_and_the_catalog_after(archive, instance):
    first = evaluate(archive, instance, None)
    (add,) = first.dynamic_partitions_requests
    assert sorted(add.partition_keys) == PARTITIONS
    instance.add_dynamic_partitions("model_experiment", add.partition_keys)
    (request,) = first.run_requests  # one backfill, not a run per partition: the backfill policy batches them
    assert requested_partitions(first) == PARTITIONS
    assert request.asset_graph_subset.non_partitioned_asset_keys == {dg.AssetKey("store_catalog"), dg.AssetKey("sea_level")}
    assert request.tags["ismip6/launched_by"] == "archive_sensor"
    assert sorted(json.loads(first.cursor)["runs"]) == PARTITIONS

    second = evaluate(archive, instance, first.cursor)
    assert second.dynamic_partitions_requests == [] and second.run_requests == []  # asked once per state, backfill not done
    # Idempotent: the same archive and store state gives the same request.
    assert evaluate(archive, instance, None).run_requests[0].tags[REQUEST_TAG] == request.tags[REQUEST_TAG]


def test_a_backfill_that_left_the_store_behind_is_requested_again_under_a_new_key(archive, instance):
    first = evaluate(archive, instance, None)
    instance.add_dynamic_partitions("model_experiment", PARTITIONS)
    request = first.run_requests[0].tags[REQUEST_TAG]
    record_backfill(archive, instance, PARTITIONS, request, BulkActionStatus.REQUESTED)
    assert evaluate(archive, instance, first.cursor).run_requests == []  # its backfill still runs

    # It finished and the store is still behind (the runs failed, or their listing missed the files).
    (backfill,) = instance.get_backfills()
    instance.update_backfill(backfill.with_status(BulkActionStatus.COMPLETED_FAILED))
    retry = evaluate(archive, instance, first.cursor)
    assert requested_partitions(retry) == PARTITIONS
    runs = json.loads(retry.cursor)["runs"]
    assert all(runs[k] == json.loads(first.cursor)["runs"][k] + "#2" for k in PARTITIONS)
    assert retry.run_requests[0].tags[REQUEST_TAG] != request


def test_one_changed_partition_is_one_partition_of_work(archive, archive_dir, instance):
    from ismip6_assets.cli.runs import run_archive

    run_archive(archive, instance, in_process=True)
    cursor = evaluate(archive, instance, None).cursor
    (archive_dir / "Projection-AIS" / "DOE/MALI/expA1" / "orog_AIS_DOE_MALI_expA1.nc").unlink()
    changed = evaluate(archive, instance, cursor)
    assert requested_partitions(changed) == ["DOE/MALI/expA1"]
