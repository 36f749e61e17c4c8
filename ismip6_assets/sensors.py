"""`archive_sensor`: keep the store current with the archive, and repair it where it fell behind."""

from __future__ import annotations

import json

import dagster as dg

from ismip6_assets.index import list_archive
from ismip6_assets.jobs import materialize_partition_job
from ismip6_assets.partitions import model_experiment_partitions_def
from ismip6_assets.paths import PartitionKey
from ismip6_assets.reconcile import refresh_requests
from ismip6_assets.resources import ArchiveResource
from ismip6_assets.store_state import read_store_state

MAX_RUNS_PER_TICK = 25  # first start on the full archive must not flood the run queue
# A run that ended without moving the store off the state it was asked for is retried (bounded).
FINISHED_STATUSES = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def run_tags(partition: PartitionKey) -> dict[str, str]:
    return {"ismip6/institution": partition.institution, "ismip6/model": partition.model, "ismip6/experiment": partition.experiment}


def _run_finished(instance: dg.DagsterInstance, run_key: str) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    return bool(runs) and runs[0].status in FINISHED_STATUSES


@dg.sensor(
    job=materialize_partition_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Watches the source archive (ISMIP6_SOURCE_URL, Projection-AIS/INST/MODEL/EXP/*.nc) with one recursive listing "
        "every 5 minutes, compared with the Icechunk store: adds a model_experiment partition for each new folder and "
        "requests a materialize_partition run for each partition the store is behind on (files added, changed or deleted, "
        f"groups lost, a folder gone), again after a run that left it behind, at most {MAX_RUNS_PER_TICK} a tick. "
        "Stopped by default: turn it on to keep the store current with the archive."
    ),
)
def archive_sensor(context: dg.SensorEvaluationContext, archive: ArchiveResource) -> dg.SensorResult:
    """Compares one recursive listing of the archive with the store each tick: adds partitions for
    new model/experiment folders and requests a run for each partition the store is behind on
    (files added, changed or deleted, groups lost, a folder gone), once per archive+store state,
    again after a run that left it behind. At most 25 runs a tick; the rest follow on later ticks."""
    rows = list_archive(archive.source).rows
    requests, cursor = refresh_requests(
        rows,
        read_store_state(archive.repository(), archive.store),
        json.loads(context.cursor) if context.cursor else {},
        run_finished=lambda key: _run_finished(context.instance, key),
        max_runs=MAX_RUNS_PER_TICK,
    )
    known = set(context.instance.get_dynamic_partitions(model_experiment_partitions_def.name))
    new_keys = sorted((set(rows["partition_key"]) | {r.partition for r in requests}) - known)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=r.run_key, partition_key=r.partition, tags=run_tags(PartitionKey.parse(r.partition)))
            for r in requests
        ],
        dynamic_partitions_requests=[model_experiment_partitions_def.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )
