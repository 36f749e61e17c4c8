import dagster as dg

from ismip6_assets.defs.assets.ice_volume import END_YEAR, ice_volume
from ismip6_assets.defs.assets.metadata import markdown
from ismip6_assets.core.executors import read_scheduler
from ismip6_assets.core.preview import data_uri
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.core.sea_level_plot import sea_level_png, sea_level_series
from ismip6_assets.core.sea_level_store import refresh_sea_level


@dg.asset(
    deps=[ice_volume],
    group_name="ismip6",
    kinds={"parquet", "xarray"},
    owners=["team:ismip6"],
    tags={"ismip6/stage": "derived"},
)
def sea_level(context: dg.AssetExecutionContext, archive: ArchiveResource) -> dg.MaterializeResult:
    """Sea-level contribution of every model and experiment (ISMIP6 method, control drift removed):
    ``{STORE}/derived/sea_level.parquet`` and one ensemble dataset per experiment in the store at
    ``derived/ensemble/{EXP}``.

    Unpartitioned: one table of the whole ensemble, refreshed once after a backfill's partitions
    (every backfill the sensor and ``ismip6 run`` launch selects it) from their `ice_volume`s; only
    the experiments a changed partition enters are rewritten. A partition whose saved volume is not
    current (it was never run through `ice_volume`, or that failed) is read here.
    """
    # Those reads run on the executor setting per-file virtualization uses (a cluster's Dask too).
    scheduler = read_scheduler(archive.executor_spec)
    result = refresh_sea_level(archive.repository(), archive.store, scheduler=scheduler, lock=archive.writer_lock)
    table = result.table
    context.log.info(
        f"sea level at {result.snapshot}: {len(result.recomputed)} partitions recomputed ({result.from_partition_runs} from their ice_volume), "
        f"{result.reused} reused, "
        f"ensembles written: {', '.join(result.ensembles_written) or 'none'}"
    )
    at_end = table[(table.year == END_YEAR) & table.sle_mm.notna()]
    summary = [
        {"experiment": exp, "models": len(rows), "median_mm": round(float(rows.sle_mm.median()), 2),
         "min_mm": round(float(rows.sle_mm.min()), 2), "max_mm": round(float(rows.sle_mm.max()), 2)}
        for exp, rows in at_end.groupby("experiment")
    ]
    metadata = {
        "snapshot": result.snapshot,
        "sea_level_parquet": dg.MetadataValue.path(result.table_url),
        "rows": len(table),
        "partitions_recomputed": len(result.recomputed),
        "partitions_reused": result.reused,
        "partitions_from_ice_volume": result.from_partition_runs,
        "ensembles_written": ", ".join(result.ensembles_written) or "none",
        "left_out": len(result.left_out),
        "left_out_table": markdown([{"partition": k, "reason": v} for k, v in sorted(result.left_out.items())]),
        "sea_level_2100": markdown(summary),
    }
    for experiment in sorted(set(table.experiment)):
        png = sea_level_png(table, experiment, width=480, height=300)
        if png is not None:
            models = len(sea_level_series(table, experiment).columns)
            metadata[f"picture_{experiment}"] = dg.MetadataValue.md(
                f"![{experiment}: sea-level contribution per model and the ensemble median]({data_uri(png)})\n\n"
                f"{models} models; model year 2099 is the state at 2100-01-01 (the papers' \"2100\")."
            )
    return dg.MaterializeResult(metadata=metadata)
