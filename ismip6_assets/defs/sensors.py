"""`archive_sensor`: keep the store current with the archive, and repair it where it fell behind."""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

from ismip6_assets.core.index import list_archive
from ismip6_assets.defs.partitions import model_experiment_partitions_def
from ismip6_assets.core.reconcile import refresh_requests
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.core.store_state import read_store_state

# What a backfill the sensor requests covers: every partitioned asset of the partitions the store is
# behind on, and the catalog once after them.
PARTITIONED_ASSETS = [dg.AssetKey(k) for k in ("file_index", "virtual_dataset", "icechunk_commit", "ice_volume")]
# Unpartitioned, after the commits: the catalog and the sea-level products.
DERIVED_ASSETS = {dg.AssetKey("store_catalog"), dg.AssetKey("sea_level")}
COMMIT_ASSET = dg.AssetKey("icechunk_commit")
REQUEST_TAG = "ismip6/sensor_request"


def request_id(requests) -> str:
    """A name for one tick's request, carried by the backfill it becomes (tag `REQUEST_TAG`)."""
    return hashlib.sha256("\n".join(sorted(r.run_key for r in requests)).encode()).hexdigest()[:16]


def _backfill_finished(instance: dg.DagsterInstance, request: str | None) -> bool:
    """Whether the backfill a tick requested has finished (None: asked before this bookkeeping)."""
    if request is None:
        return True
    backfills = instance.get_backfills(filters=BulkActionsFilter(tags={REQUEST_TAG: request}), limit=1)
    return bool(backfills) and backfills[0].status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING)


def requested_partitions(result: dg.SensorResult) -> list[str]:
    """The partitions a tick's backfill request covers, sorted (none: nothing requested)."""
    keys = set()
    for request in result.run_requests or []:
        subset = request.asset_graph_subset
        keys |= set(subset.partitions_subsets_by_asset_key[COMMIT_ASSET].get_partition_keys()) if subset else set()
    return sorted(keys)


def backfill_request(keys: list[str], request: str) -> dg.RunRequest:
    """One backfill of `keys` and the catalog: the backfill policy batches them into runs."""
    subset = model_experiment_partitions_def.subset_with_partition_keys(keys)
    graph_subset = AssetGraphSubset(
        partitions_subsets_by_asset_key={key: subset for key in PARTITIONED_ASSETS}, non_partitioned_asset_keys=DERIVED_ASSETS
    )
    return dg.RunRequest.for_asset_graph_subset(graph_subset, tags={"ismip6/launched_by": "archive_sensor", REQUEST_TAG: request})


@dg.sensor(
    # An asset selection, not a job: a sensor may request backfills only of assets it targets.
    asset_selection=dg.AssetSelection.assets(*PARTITIONED_ASSETS, *DERIVED_ASSETS),
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Watches the source archive (ISMIP6_SOURCE_URL, Projection-AIS/INST/MODEL/EXP/*.nc) with one recursive listing "
        "every 5 minutes, compared with the Icechunk store: adds a model_experiment partition for each new folder and "
        "requests ONE backfill of every partition the store is behind on (files added, changed or deleted, groups lost, "
        "a folder gone) and of the catalog after them; the backfill policy batches partitions into runs. A partition left "
        "behind after its backfill finished is requested again (3 attempts in all). "
        "Stopped by default: turn it on to keep the store current with the archive."
    ),
)
def archive_sensor(context: dg.SensorEvaluationContext, archive: ArchiveResource) -> dg.SensorResult:
    """Compares one recursive listing of the archive with the store each tick: adds partitions for
    new model/experiment folders and requests one backfill of every partition the store is behind
    on, once per archive+store state, again after the backfill left it behind."""
    rows = list_archive(archive.source, skip_list=archive.skip_list_entries).rows
    previous = json.loads(context.cursor) if context.cursor else {}
    asked = previous.get("requests", {})
    requests, runs = refresh_requests(
        rows,
        read_store_state(archive.repository(), archive.store),
        previous.get("runs", {}),
        run_finished=lambda run_key: _backfill_finished(context.instance, asked.get(run_key.split(":", 1)[0])),
        max_runs=len(rows) + 1,
    )
    request = request_id(requests)
    asked = {**asked, **{r.partition: request for r in requests}}
    known = set(context.instance.get_dynamic_partitions(model_experiment_partitions_def.name))
    new_keys = sorted((set(rows["partition_key"]) | {r.partition for r in requests}) - known)
    return dg.SensorResult(
        run_requests=[backfill_request(sorted(r.partition for r in requests), request)] if requests else [],
        dynamic_partitions_requests=[model_experiment_partitions_def.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps({"runs": runs, "requests": asked}, sort_keys=True),
    )
