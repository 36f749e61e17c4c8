import dagster as dg

from ismip6_assets.core.executors import partitions_at_once, read_scheduler
from ismip6_assets.core.partition_volumes import refresh_partition_volumes, volume_path
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.defs.assets.icechunk_commit import icechunk_commit
from ismip6_assets.defs.partitions import PARTITION_BACKFILL_POLICY, model_experiment_partitions_def
from ismip6_assets.defs.resources import ArchiveResource

END_YEAR = 2099  # the state at 2100-01-01: what the papers call "2100"


@dg.asset(
    deps=[icechunk_commit],
    partitions_def=model_experiment_partitions_def,
    backfill_policy=PARTITION_BACKFILL_POLICY,
    group_name="ismip6",
    kinds={"xarray", "json"},
    owners=["team:ismip6"],
    tags={"ismip6/stage": "derived"},
)
def ice_volume(context: dg.AssetExecutionContext, archive: ArchiveResource) -> dg.MaterializeResult:
    """The partition's ice volume above floatation per ISMIP6 model year (ISMIP6 method: lithk, topg,
    sftgif, sftgrf read through the store, EPSG:3031 area factor, the model's densities) and its
    ISMIP6 scalar series: ``{STORE}/derived/volumes/{INST}_{MODEL}/{EXP}.json``.

    Partitioned, in the partition's own run after its commit, so a backfill's runs read their
    partitions side by side; `sea_level` turns them into contributions against the control runs.
    Read again only when the sources of its fields or scalars changed.
    """
    partitions = [PartitionKey.parse(k) for k in context.partition_keys]
    # Side by side on gs:// (their reads wait on round trips), one after another on local disk.
    at_once = partitions_at_once(archive.store, archive.source)
    volumes = refresh_partition_volumes(archive.repository(), archive.store, partitions, scheduler=read_scheduler(archive.executor_spec), at_once=at_once)
    for partition, volume in volumes.items():
        ivaf = volume.ivaf
        metadata = {
            "volume_json": dg.MetadataValue.path(volume_path(archive.store, partition).url),
            "recomputed": volume.recomputed,
            "model_years": len(ivaf) if ivaf is not None else 0,
            "first_year": int(ivaf.index[0]) if ivaf is not None else None,
            "last_year": int(ivaf.index[-1]) if ivaf is not None else None,
            "ivaf_m3_first": float(ivaf.iloc[0]) if ivaf is not None else None,
            "ivaf_m3_2099": float(ivaf[END_YEAR]) if ivaf is not None and END_YEAR in ivaf.index else None,
            "scalars": ", ".join(sorted(volume.scalars or {})) or "none",
            "left_out": volume.reason or "",
        }
        context.add_asset_metadata({k: v for k, v in metadata.items() if v is not None}, partition_key=str(partition))
        if volume.reason:
            context.log.info(f"{partition}: no ice volume: {volume.reason}")
    computed = sum(v.recomputed for v in volumes.values())
    context.log.info(f"ice volume of {len(volumes)} partitions: {computed} read through the store, {len(volumes) - computed} current")
    return dg.MaterializeResult()
