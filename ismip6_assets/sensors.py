"""`archive_sensor`: keep the store current with the archive."""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from ismip6_assets.index import list_archive
from ismip6_assets.jobs import materialize_partition_job
from ismip6_assets.partitions import model_experiment_partitions_def
from ismip6_assets.paths import PartitionKey
from ismip6_assets.resources import ArchiveResource

MAX_RUNS_PER_TICK = 25  # first start on the full archive must not flood the run queue


def partition_digests(rows) -> dict[str, str]:
    """Per partition, a digest of its files' URLs and fingerprints: changes iff a file does."""
    out = {}
    for key, group in rows.groupby("partition_key"):
        text = "\n".join(sorted(group["url"] + " " + group["fingerprint"]))
        out[key] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def run_tags(partition: PartitionKey) -> dict[str, str]:
    return {"ismip6/institution": partition.institution, "ismip6/model": partition.model, "ismip6/experiment": partition.experiment}


@dg.sensor(job=materialize_partition_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def archive_sensor(context: dg.SensorEvaluationContext, archive: ArchiveResource) -> dg.SensorResult:
    """Watches the source archive (one recursive listing a tick): adds partitions for new
    model/experiment folders and requests runs only for partitions whose files were added,
    changed or deleted. At most 25 runs a tick; the rest follow on later ticks."""
    digests = partition_digests(list_archive(archive.source).rows)
    seen = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(model_experiment_partitions_def.name))
    new_keys = sorted(set(digests) - known)
    # A folder that disappeared is a change too: its run removes the partition's groups.
    changed = sorted(k for k in set(digests) | set(seen) if digests.get(k, "gone") != seen.get(k))
    requested = changed[:MAX_RUNS_PER_TICK]
    cursor = dict(seen)
    for key in requested:
        if key in digests:
            cursor[key] = digests[key]
        else:
            cursor.pop(key, None)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"{key}:{digests.get(key, 'gone')}", partition_key=key, tags=run_tags(PartitionKey.parse(key)))
            for key in requested
        ],
        dynamic_partitions_requests=[model_experiment_partitions_def.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )
