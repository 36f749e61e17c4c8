"""The store as a STAC Collection: one Item per model/experiment, its asset the view group.

The asset follows STAC's Zarr practice: ``application/vnd.zarr`` with role ``data``, its href the
Icechunk repository, and ``xarray:open_kwargs`` naming the group to open in it (the xarray-assets
extension, declared in the Item's ``stac_extensions``). Its ``icechunk:virtual_chunk_containers``
lists the URL prefixes of the source files its references point into, each a prefix a reader must
authorize (``icechunk.containers_credentials({prefix: ...})``) before chunks read; ``icechunk:*``
fields follow the convention public Icechunk catalogs use, which has no published schema to
declare. Each Item carries the experiment's ISMIP6 protocol attributes (experiments.py). No
Dagster here.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pystac
from pystac.extensions.xarray_assets import XarrayAssetsExtension

from ismip6_assets.core.experiments import experiment_attributes
from ismip6_assets.core.locations import Location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.sea_level_store import TABLE_RELPATH, ensemble_group
from ismip6_assets.core.store import BRANCH

COLLECTION_ID = "ismip6-projection-ais"
# EPSG:3031's area of use: the Antarctic, south of 60 S.
BBOX = [-180.0, -90.0, 180.0, -60.0]
GEOMETRY = {"type": "Polygon", "coordinates": [[[-180.0, -90.0], [180.0, -90.0], [180.0, -60.0], [-180.0, -60.0], [-180.0, -90.0]]]}


def item_id(partition: PartitionKey) -> str:
    return f"{partition.model_group}-{partition.experiment}"


def _span(rows: pd.DataFrame) -> tuple[dt.datetime, dt.datetime]:
    # numpy, not Series.dropna: the Collection is rebuilt whole after every commit (439 Items),
    # and three dropna an Item were most of a refresh's catalog time.
    first = rows["first_year"].to_numpy(dtype="float64", na_value=np.nan)
    last = rows["last_year"].to_numpy(dtype="float64", na_value=np.nan)
    start = int(np.nanmin(first)) if np.isfinite(first).any() else 2015
    end = int(np.nanmax(last)) if np.isfinite(last).any() else start
    return dt.datetime(start, 1, 1, tzinfo=dt.UTC), dt.datetime(end, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def chunk_prefixes(rows: pd.DataFrame, container_prefixes: list[str]) -> list[str]:
    """The virtual-chunk container prefixes (the repository's) that the rows' source files sit under."""
    urls = [u for u in rows["source_url"].tolist() if isinstance(u, str)]
    return sorted(p for p in container_prefixes if any(u.startswith(p) for u in urls))


def partition_item(
    partition: PartitionKey, rows: pd.DataFrame, store_url: str, container_prefixes: list[str] = ()
) -> pystac.Item:
    """The Item of one model/experiment from its catalog rows; `container_prefixes`: the
    repository's virtual-chunk container URL prefixes."""
    start, end = _span(rows)
    views = [v for v in rows["view"].tolist() if isinstance(v, str)]
    properties = {
        "title": f"{partition.model_group} {partition.experiment}",
        "start_datetime": start.isoformat(), "end_datetime": end.isoformat(),
        "ismip6:institution": partition.institution, "ismip6:model": partition.model, "ismip6:experiment": partition.experiment,
        "ismip6:variables": sorted(rows["variable"]),
    } | {f"ismip6:{k}": v for k, v in experiment_attributes(partition.experiment).items()}
    item = pystac.Item(item_id(partition), geometry=GEOMETRY, bbox=BBOX, datetime=None, properties=properties,
                       start_datetime=start, end_datetime=end)
    group = views[0] if views else partition.group
    prefixes = chunk_prefixes(rows, list(container_prefixes))
    authorize = f"; authorize virtual chunks under {', '.join(prefixes)}" if prefixes else ""
    asset = pystac.Asset(
        href=store_url, media_type=pystac.MediaType.VND_ZARR, roles=["data"],
        title=f"{partition.model_group}/{partition.experiment}: every variable on model years",
        description=f"Icechunk repository (branch {BRANCH!r}); open group {group!r} with xarray.open_zarr(..., consolidated=False){authorize}",
        extra_fields={"icechunk:branch": BRANCH, "icechunk:virtual_chunk_containers": [{"url_prefix": p} for p in prefixes]},
    )
    item.add_asset("view", asset)
    XarrayAssetsExtension.ext(asset, add_if_missing=True).open_kwargs = {"group": group, "consolidated": False}
    ensemble = ensemble_group(partition.experiment)  # written by the sea_level asset (inline: no virtual chunks)
    ensemble_asset = pystac.Asset(
        href=store_url, media_type=pystac.MediaType.VND_ZARR, roles=["data"],
        title=f"{partition.experiment}: sea-level contribution and ISMIP6 scalars of every model, on model years",
        description=f"Icechunk repository (branch {BRANCH!r}); open group {ensemble!r} with xarray.open_zarr(..., consolidated=False)",
        extra_fields={"icechunk:branch": BRANCH},
    )
    item.add_asset("sea_level_ensemble", ensemble_asset)
    XarrayAssetsExtension.ext(ensemble_asset, add_if_missing=True).open_kwargs = {"group": ensemble, "consolidated": False}
    return item


def build_collection(frame: pd.DataFrame, store_url: str, container_prefixes: list[str] = ()) -> pystac.Collection:
    """The Collection of `frame` (the catalog); `container_prefixes`: the repository's virtual-chunk
    container URL prefixes, named in each Item's asset where its references point."""
    groups = frame.groupby(["institution", "model", "experiment"], sort=True)
    items = [partition_item(PartitionKey(*key), rows, store_url, container_prefixes) for key, rows in groups]
    starts = [i.common_metadata.start_datetime for i in items] or [dt.datetime(2015, 1, 1, tzinfo=dt.UTC)]
    ends = [i.common_metadata.end_datetime for i in items] or starts
    collection = pystac.Collection(
        id=COLLECTION_ID,
        title="ISMIP6 Antarctic projections, virtual Zarr in Icechunk",
        description="Every model/experiment of the ISMIP6 Projection-AIS archive as an analysis-ready view (variables on model years), referencing the source NetCDF files.",
        extent=pystac.Extent(pystac.SpatialExtent([BBOX]), pystac.TemporalExtent([[min(starts), max(ends)]])),
        license="other",
    )
    collection.add_asset("sea_level", pystac.Asset(
        href=f"{store_url.rstrip('/')}/{TABLE_RELPATH}", media_type="application/vnd.apache.parquet", roles=["data"],
        title="Sea-level contribution per model, experiment and model year (ISMIP6 method, control drift removed)",
    ))
    collection.add_items(items)
    collection.catalog_type = pystac.CatalogType.SELF_CONTAINED  # relative links: the folder can move
    return collection


def write_collection(store: Location, collection: pystac.Collection, changed: set[str] | None = None) -> str:
    """``{STORE}/catalog/stac/collection.json`` and ``{id}/{id}.json`` per Item (links relative).

    Only the Items of `changed` partition keys (all when None) are rewritten, so a refresh after
    one commit writes two documents, not one per partition; Items of partitions gone are removed.
    """
    root = store.join("catalog", "stac")
    collection.normalize_hrefs(root.local_dir or root.url)
    # One listing says which Items exist (a request per Item was most of a refresh's catalog time on gs://).
    present = {root.relpath_of(path) for path in store.fs.find(root.fs_path)}
    docs, ids = {}, set()
    for item in collection.get_items():
        ids.add(item.id)
        key = "/".join(item.properties[f"ismip6:{k}"] for k in ("institution", "model", "experiment"))
        relpath = root.relpath_of(item.get_self_href())
        if changed is None or key in changed or relpath not in present:
            docs[relpath] = _json(item.to_dict(include_self_link=False, transform_hrefs=True))
    docs["collection.json"] = _json(collection.to_dict(include_self_link=False, transform_hrefs=True))
    root.put_many(docs)
    for gone in sorted({relpath.split("/")[0] for relpath in present if "/" in relpath} - ids):
        store.fs.rm(root.join(gone).fs_path, recursive=True)
    return root.join("collection.json").url


def _json(doc: dict) -> bytes:
    return json.dumps(doc, indent=1).encode()
