import dagster as dg

from ismip6_assets.defs.assets.icechunk_commit import icechunk_commit
from ismip6_assets.defs.assets.ice_volume import ice_volume
from ismip6_assets.defs.assets.metadata import markdown, table
from ismip6_assets.core.catalog import availability, availability_png, build_catalog, catalog_path, stac_dir, write_catalog
from ismip6_assets.core.preview import data_uri
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.core.stac import build_collection, write_collection

TABLE_ROWS = 500  # the UI's table; the parquet holds every row


@dg.asset(
    # After the partitions' runs have finished (`ice_volume` is their last asset), not only their
    # commits: it then runs in the same run as `sea_level`, one run start-up for both.
    deps=[icechunk_commit, ice_volume],
    group_name="ismip6",
    kinds={"parquet", "stac"},
    owners=["team:ismip6"],
    tags={"ismip6/stage": "catalog"},
)
def store_catalog(context: dg.AssetExecutionContext, archive: ArchiveResource) -> dg.MaterializeResult:
    """What the store holds, one row per variable group: ``{STORE}/catalog/catalog.parquet``, and a
    STAC Collection with one Item per model/experiment at ``{STORE}/catalog/stac/collection.json``.

    Unpartitioned: one catalog of the whole store, refreshed once after the commits of a backfill
    (every backfill the sensor and ``ismip6 run`` launch selects it) from the experiment groups
    changed since the catalog's snapshot.
    """
    repo = archive.repository()
    frame, snapshot, reread = build_catalog(repo, archive.store)
    if reread is None:  # already at the head: nothing written
        parquet_url, stac_url = catalog_path(archive.store).url, stac_dir(archive.store).join("collection.json").url
    else:
        parquet_url = write_catalog(archive.store, frame, snapshot)
        prefixes = sorted(repo.config.virtual_chunk_containers or {})  # what a reader must authorize
        stac_url = write_collection(archive.store, build_collection(frame, archive.store.url, prefixes), reread)
    reread = reread or set()
    context.log.info(f"catalog at {snapshot}: {len(frame)} groups, {len(reread)} partitions re-read")
    grid = availability(frame)
    picture = f"![variables per model and experiment]({data_uri(availability_png(frame))})" if len(frame) else "_the store is empty_"
    return dg.MaterializeResult(
        metadata={
            "snapshot": snapshot,
            "variable_groups": len(frame),
            "partitions": int(frame.groupby(["institution", "model", "experiment"]).ngroups) if len(frame) else 0,
            "models": int(grid.shape[0]),
            "experiments": int(grid.shape[1]) if len(frame) else 0,
            "partitions_reread": len(reread),
            "catalog_parquet": dg.MetadataValue.path(parquet_url),
            "stac_collection": dg.MetadataValue.path(stac_url),
            "availability": dg.MetadataValue.md(picture + "\n\nCells: variables stored per model (row) and experiment (column)."),
            "catalog_table": table(frame.head(TABLE_ROWS).astype(object).where(frame.head(TABLE_ROWS).notna(), None).to_dict("records")),
            "availability_table": markdown(grid.reset_index(names="model").to_dict("records")) if len(frame) else markdown([]),
        }
    )
