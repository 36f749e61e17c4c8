import dagster as dg
import pandas as pd

from ismip6_assets.assets.metadata import file_records, file_table, markdown
from ismip6_assets.index import list_archive, write_index
from ismip6_assets.partitions import model_experiment_partitions_def
from ismip6_assets.paths import PartitionKey
from ismip6_assets.resources import ArchiveResource


@dg.asset(
    partitions_def=model_experiment_partitions_def,
    group_name="ismip6",
    kinds={"netcdf", "parquet"},
    owners=["team:ismip6"],
    tags={"ismip6/stage": "index"},
    io_manager_key="store_io_manager",
)
def file_index(context: dg.AssetExecutionContext, archive: ArchiveResource) -> dg.Output[pd.DataFrame]:
    """The partition's source NetCDF files (variable, size, fingerprint) from a fresh listing of its
    archive folder (no request per file), also written as parquet under ``{STORE}/index/``.

    Partitioned per model/experiment because that is the unit a modelling group delivers and fixes.
    """
    partition = PartitionKey.parse(context.partition_key)
    listing = list_archive(archive.source, partition)
    index_url = write_index(archive.store, partition, listing.rows)
    context.log.info(f"{partition}: {len(listing.rows)} files indexed, {len(listing.ignored)} ignored")
    files = file_records(listing.rows)
    return dg.Output(
        listing.rows,
        metadata={
            "files": len(listing.rows),
            "skipped": int(listing.rows["skipped"].sum()),
            "ignored": len(listing.ignored),
            "bytes": int(listing.rows["size"].sum()),
            "index_parquet": dg.MetadataValue.path(index_url),
            "file_table": file_table(files),
            "ignored_paths": markdown([{"path": p, "reason": r} for p, r in listing.ignored]),
            "dagster/row_count": len(listing.rows),
        },
    )
