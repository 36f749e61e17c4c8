"""`archive_sensor` evaluated on a real `DagsterInstance`, as the daemon evaluates it."""

from __future__ import annotations

import json

import dagster as dg

from ismip6_assets import sensors
from ismip6_assets.sensors import archive_sensor

PARTITIONS = [
    "AWI/PISM1/ctrl_proj_std", "AWI/PISM1/exp05", "DOE/MALI/expA1", "ILTS_PIK/SICOPOLIS1/exp05", "ILTS_PIK/SICOPOLIS1/hist_std", "UCIJPL/ISSM/exp13", "ULB/fETISh_16km/expA6",
]


def evaluate(archive, instance, cursor):
    # A context manager: ArchiveResource holds a nested resource that must be set up and torn down.
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"archive": archive}) as context:
        return archive_sensor(context)


def test_first_start_adds_every_partition_and_requests_runs_in_bounded_batches(archive, instance, monkeypatch):
    monkeypatch.setattr(sensors, "MAX_RUNS_PER_TICK", 4)
    first = evaluate(archive, instance, None)
    (add,) = first.dynamic_partitions_requests
    assert sorted(add.partition_keys) == PARTITIONS
    instance.add_dynamic_partitions("model_experiment", add.partition_keys)
    assert [r.partition_key for r in first.run_requests] == PARTITIONS[:4]
    assert first.run_requests[0].tags == {"ismip6/institution": "AWI", "ismip6/model": "PISM1", "ismip6/experiment": "ctrl_proj_std"}
    assert sorted(json.loads(first.cursor)) == PARTITIONS[:4]

    second = evaluate(archive, instance, first.cursor)
    assert second.dynamic_partitions_requests == []
    assert [r.partition_key for r in second.run_requests] == PARTITIONS[4:]
    assert evaluate(archive, instance, second.cursor).run_requests == []  # every state asked once
    # Idempotent: the same archive and store state gives the same run keys.
    assert [r.run_key for r in evaluate(archive, instance, None).run_requests] == [r.run_key for r in first.run_requests]


def test_a_run_that_left_the_store_behind_is_requested_again_under_a_new_key(archive, instance):
    first = evaluate(archive, instance, None)
    failed, idle, waiting = first.run_requests[:3]

    @dg.asset
    def crashed():
        raise RuntimeError("the run died")

    @dg.asset
    def did_nothing():
        return None

    # Finished runs under the requests' run keys, in the instance the sensor reads: one failed, one
    # succeeded without changing the store (as when its listing missed the new files).
    dg.materialize([crashed], instance=instance, tags={"dagster/run_key": failed.run_key}, raise_on_error=False)
    dg.materialize([did_nothing], instance=instance, tags={"dagster/run_key": idle.run_key})
    retry = evaluate(archive, instance, first.cursor)
    assert [(r.partition_key, r.run_key) for r in retry.run_requests] == [
        (failed.partition_key, failed.run_key + "#2"), (idle.partition_key, idle.run_key + "#2")
    ]
    assert waiting.partition_key not in {r.partition_key for r in retry.run_requests}  # no run yet: still queued
