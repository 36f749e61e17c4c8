from collections import Counter

import dagster as dg
import pandas as pd

from ismip6_assets.assets.metadata import failure_table, table, virtual_file_records
from ismip6_assets.executors import executor_for
from ismip6_assets.partitions import model_experiment_partitions_def
from ismip6_assets.paths import PartitionKey
from ismip6_assets.reconcile import rows_to_virtualize, store_diff
from ismip6_assets.resources import ArchiveResource
from ismip6_assets.store_state import read_partition_state
from ismip6_assets.virtualize import VirtualizationResult, virtualize_rows


@dg.asset(
    partitions_def=model_experiment_partitions_def,
    group_name="ismip6",
    kinds={"virtualizarr", "netcdf"},
    owners=["team:ismip6"],
    io_manager_key="store_io_manager",
)
def virtual_dataset(context: dg.AssetExecutionContext, archive: ArchiveResource, file_index: pd.DataFrame) -> dg.Output[VirtualizationResult]:
    """Virtual datasets (chunk references, coordinates inline) of the files the store lacks; each
    file's format (``netcdf4``/``netcdf3``) from its magic bytes, in the same read as its header.

    Partitioned per model/experiment so that one bad file or folder never holds back the others.
    """
    partition = PartitionKey.parse(context.partition_key)
    diff = store_diff(partition, file_index, read_partition_state(archive.repository(), partition))
    todo = rows_to_virtualize(file_index, diff)

    def progress(done: int, total: int, item) -> None:
        # Every log line is an event stored in the instance (3-5 ms of CPU each): one per 100 files, not per 10.
        if done == total or done % 100 == 0:
            context.log.info(f"{partition}: virtualized {done}/{total} files")

    # Inline, a local process pool or a Dask cluster, as ISMIP6_EXECUTOR says (see executors.py).
    executor = executor_for(len(todo))
    result = virtualize_rows(todo.to_dict("records"), archive.source, executor=executor, progress=progress)
    quirks = virtual_file_records(result.files)  # per file: chunk refs, coordinates loaded inline, quirks fixed
    return dg.Output(
        result,
        metadata={
            "virtualized": len(result.files),
            "failures": len(result.failures),
            "unchanged": len(diff.ok),
            "chunk_refs": sum(q["chunk_refs"] for q in quirks),
            "loaded_coordinates": sum(len(q["loaded_coordinates"].split(", ")) for q in quirks if q["loaded_coordinates"]),
            "quirks_fixed": sum(len(f.quirks) for f in result.files),
            "files_with_warnings": sum(bool(f.warnings) for f in result.files),  # e.g. a time axis borrowed from another file
            "formats": dg.MetadataValue.json(dict(sorted(Counter(f.file_format for f in result.files).items()))),
            "files": table(quirks),
            "failure_table": failure_table(result.failures),
        },
    )
