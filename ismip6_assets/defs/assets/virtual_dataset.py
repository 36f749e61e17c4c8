from collections import Counter

import dagster as dg
import pandas as pd

from ismip6_assets.defs.assets.metadata import failure_table, table, virtual_file_records
from ismip6_assets.core.executors import executor_for, partitions_at_once
from ismip6_assets.defs.partitions import PARTITION_BACKFILL_POLICY, model_experiment_partitions_def
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.reconcile import rows_to_virtualize, store_diff
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.core.store import BRANCH
from ismip6_assets.core.store_state import read_partition_states
from ismip6_assets.core.virtualize import VirtualizationResult, virtualize_partitions


def _metadata(result: VirtualizationResult, unchanged: int) -> dict:
    quirks = virtual_file_records(result.files)  # per file: chunk refs, coordinates loaded inline, quirks fixed
    return {
        "virtualized": len(result.files),
        "failures": len(result.failures),
        "unchanged": unchanged,
        "chunk_refs": sum(q["chunk_refs"] for q in quirks),
        "loaded_coordinates": sum(len(q["loaded_coordinates"].split(", ")) for q in quirks if q["loaded_coordinates"]),
        "quirks_fixed": sum(len(f.quirks) for f in result.files),
        "files_with_warnings": sum(bool(f.warnings) for f in result.files),  # e.g. a time axis borrowed from another file
        "formats": dg.MetadataValue.json(dict(sorted(Counter(f.file_format for f in result.files).items()))),
        "files": table(quirks),
        "failure_table": failure_table(result.failures),
    }


@dg.asset(
    partitions_def=model_experiment_partitions_def,
    backfill_policy=PARTITION_BACKFILL_POLICY,
    group_name="ismip6",
    kinds={"virtualizarr", "netcdf"},
    owners=["team:ismip6"],
    io_manager_key="store_io_manager",
)
def virtual_dataset(
    context: dg.AssetExecutionContext, archive: ArchiveResource, file_index: dict[str, pd.DataFrame]
) -> dg.Output[dict[str, VirtualizationResult]]:
    """Virtual datasets (chunk references, coordinates inline) of the files the store lacks; each
    file's format (``netcdf4``/``netcdf3``) from its magic bytes, in the same read as its header.

    Partitioned per model/experiment so that one bad file or folder never holds back the others.
    """
    # Every partition's state from one session (each session of its own looked up the branch again,
    # a round trip on gs://), side by side on gs://.
    partitions = {key: PartitionKey.parse(key) for key in file_index}
    states = read_partition_states(archive.repository().readonly_session(BRANCH), list(partitions.values()),
                                   partitions_at_once(archive.store, archive.source))
    todo = {}
    for key, rows in file_index.items():
        diff = store_diff(partitions[key], rows, states[partitions[key]])
        todo[key] = (rows_to_virtualize(rows, diff), len(diff.ok))
    # Inline, a local process pool or a Dask cluster, as ISMIP6_EXECUTOR says (see executors.py);
    # one pool serves every partition of the run, handed each one's files before the last is done.
    executor = executor_for(sum(len(rows) for rows, _ in todo.values()), archive.executor_spec)
    batches = ((key, rows.to_dict("records")) for key, (rows, _) in todo.items())
    values = {}
    for i, (key, result) in enumerate(virtualize_partitions(batches, archive.source, executor), start=1):
        context.log.info(f"[{i}/{len(todo)}] {key}: virtualized {len(result.files)} files, {len(result.failures)} failed")
        values[key] = result
        context.add_asset_metadata(_metadata(result, todo[key][1]), partition_key=key)
    return dg.Output(values)
