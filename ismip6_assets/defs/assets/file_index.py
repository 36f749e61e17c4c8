import dagster as dg
import pandas as pd

from ismip6_assets.defs.assets.metadata import file_records, file_table, markdown
from ismip6_assets.core.index import list_archive, write_indexes
from ismip6_assets.defs.partitions import PARTITION_BACKFILL_POLICY, model_experiment_partitions_def
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.defs.resources import ArchiveResource

# Up to this many partitions a run lists each folder; more, and one listing of the whole archive
# (a few paginated requests on gs://) serves them all.
FOLDER_LISTINGS_MAX = 3


def listings(archive: ArchiveResource, keys: list[str]):
    """Each partition's listing of now: its folder's, or its share of one listing of the archive."""
    if len(keys) <= FOLDER_LISTINGS_MAX:
        return {k: list_archive(archive.source, PartitionKey.parse(k), archive.skip_list_entries) for k in keys}
    whole = list_archive(archive.source, skip_list=archive.skip_list_entries)
    return {k: whole.restricted_to(PartitionKey.parse(k)) for k in keys}


@dg.asset(
    partitions_def=model_experiment_partitions_def,
    backfill_policy=PARTITION_BACKFILL_POLICY,
    group_name="ismip6",
    kinds={"netcdf", "parquet"},
    owners=["team:ismip6"],
    tags={"ismip6/stage": "index"},
    io_manager_key="store_io_manager",
)
def file_index(context: dg.AssetExecutionContext, archive: ArchiveResource) -> dg.Output[dict[str, pd.DataFrame]]:
    """The partition's source NetCDF files (variable, size, fingerprint) from a fresh listing of its
    archive folder (no request per file), also written as parquet under ``{STORE}/index/``.

    Partitioned per model/experiment because that is the unit a modelling group delivers and fixes;
    a run may cover several partitions (the backfill policy), each with its own value and metadata.
    """
    values = {}
    found = listings(archive, context.partition_keys)
    index_urls = write_indexes(archive.store, {PartitionKey.parse(key): listing.rows for key, listing in found.items()})
    for key, listing in found.items():
        partition = PartitionKey.parse(key)
        index_url = index_urls[partition]
        context.log.info(f"{partition}: {len(listing.rows)} files indexed, {len(listing.ignored)} ignored")
        values[key] = listing.rows
        context.add_asset_metadata(
            {
                "files": len(listing.rows),
                "skipped": int(listing.rows["skipped"].sum()),
                "ignored": len(listing.ignored),
                "bytes": int(listing.rows["size"].sum()),
                "index_parquet": dg.MetadataValue.path(index_url),
                "file_table": file_table(file_records(listing.rows)),
                "ignored_paths": markdown([{"path": p, "reason": r} for p, r in listing.ignored]),
                "dagster/row_count": len(listing.rows),
            },
            partition_key=key,
        )
    return dg.Output(values)
