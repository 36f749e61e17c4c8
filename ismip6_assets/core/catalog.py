"""The catalog beside the store: one parquet row per stored variable group, and a STAC Collection.

"Which models ran exp05 with lithk, over which years?" is one ``pd.read_parquet`` of
``{STORE}/catalog/catalog.parquet`` instead of opening every group. Every column comes from the
store's own documents (no listing of the archive): the variable group's attributes (source URL,
fingerprint, format, and the first and last model year of its own time axis, fixes/model_years.py),
its array's attributes and shape (units, standard name, time steps, grid), and whether the view
holds it (views.py); the experiment's ISMIP6 protocol (kind, scenario, AOGCM, ocean melt, control
run, tier) comes from the packaged experiments table (experiments.py).
``{STORE}/catalog/stac/collection.json`` is a STAC Collection with one Item per model/experiment
whose asset is its view group.

Kept current cheaply: the parquet records the snapshot it describes; a refresh re-reads only the
experiment groups Icechunk's diff says changed since (store_state.py's own approach), and rewrites
only their STAC Items. No Dagster here.
"""

from __future__ import annotations

import asyncio
import io
import json

import icechunk
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ismip6_assets.core.experiments import experiment_attributes
from ismip6_assets.core.fixes.grid import GRID_HALF_WIDTH
from ismip6_assets.core.fixes.model_years import MODEL_YEARS_ATTR
from ismip6_assets.core.locations import Location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.store import BRANCH
from ismip6_assets.core.store_state import _changed_experiment_paths, load_store_state
from ismip6_assets.core.variables import variable_type
from ismip6_assets.core.views import VARIABLE_YEARS_ATTR, VARIABLES_ATTR, view_group
from ismip6_assets.core.virtualize import SOURCE_FORMAT_ATTR

# Protocol column -> the attribute experiments.py names it.
PROTOCOL_COLUMNS = {
    "experiment_kind": "experiment_kind", "scenario": "scenario", "aogcm": "forcing_aogcm", "ocean_melt": "ocean_melt",
    "control_experiment": "control_experiment", "tier": "tier",
}
COLUMNS = [
    "institution", "model", "experiment", *PROTOCOL_COLUMNS, "variable", "group", "view", "variable_type", "units",
    "standard_name", "first_year", "last_year", "n_times", "grid_km", "format", "source_url", "fingerprint",
]
SNAPSHOT_KEY = b"ismip6_snapshot"  # parquet schema metadata: the snapshot the catalog describes


def catalog_path(store: Location) -> Location:
    return store.join("catalog", "catalog.parquet")


def stac_dir(store: Location) -> Location:
    return store.join("catalog", "stac")


def empty_catalog() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    ints = {c: "Int64" for c in ("tier", "first_year", "last_year", "n_times", "grid_km")}
    return frame[COLUMNS].astype({**{c: "string" for c in COLUMNS if c not in ints}, **ints}).reset_index(drop=True)


async def _documents(store, keys: list[str]) -> list[dict]:
    prototype = default_buffer_prototype()
    found = await asyncio.gather(*(store.get(k, prototype) for k in keys))
    return [json.loads(d.to_bytes()) if d is not None else {} for d in found]


def _grid_km(array: dict) -> int | None:
    dims, shape = array.get("dimension_names") or [], array.get("shape") or []
    if "x" not in dims:
        return None
    nx = shape[dims.index("x")]
    return round(2 * GRID_HALF_WIDTH / (nx - 1) / 1000) if nx > 1 else None


def partition_rows(session_store, partition: PartitionKey, variables: list[str]) -> list[dict]:
    """Catalog rows of one stored partition, from its documents fetched at once.

    A variable's years are its group's own (``ismip6_model_years``), whether or not the view holds
    it; a group stored before groups carried them falls back to the view's years of it."""
    groups = [partition.variable_group(v) for v in variables]
    keys = [f"{g}/zarr.json" for g in groups] + [f"{g}/{v}/zarr.json" for g, v in zip(groups, variables)] + [f"{view_group(partition)}/zarr.json"]
    docs = sync(_documents(session_store, keys))
    group_docs, array_docs, view_doc = docs[: len(groups)], docs[len(groups) : -1], docs[-1]
    view_attrs = view_doc.get("attributes") or {}
    view_years, in_view = view_attrs.get(VARIABLE_YEARS_ATTR, {}), set(view_attrs.get(VARIABLES_ATTR, []))
    protocol = experiment_attributes(partition.experiment)
    protocol = {column: protocol.get(name) for column, name in PROTOCOL_COLUMNS.items()}
    rows = []
    for variable, group, gdoc, adoc in zip(variables, groups, group_docs, array_docs):
        gattrs, aattrs = gdoc.get("attributes") or {}, adoc.get("attributes") or {}
        dims, shape = adoc.get("dimension_names") or [], adoc.get("shape") or []
        first, last = gattrs.get(MODEL_YEARS_ATTR) or view_years.get(variable) or (None, None)
        rows.append({
            "institution": partition.institution, "model": partition.model, "experiment": partition.experiment, **protocol,
            "variable": variable, "group": group, "view": view_group(partition) if variable in in_view else None,
            "variable_type": variable_type(variable) or None, "units": aattrs.get("units"), "standard_name": aattrs.get("standard_name"),
            "first_year": first, "last_year": last, "n_times": shape[dims.index("time")] if "time" in dims else 0,
            "grid_km": _grid_km(adoc), "format": gattrs.get(SOURCE_FORMAT_ATTR), "source_url": gattrs.get("ismip6_source_url"),
            "fingerprint": gattrs.get("ismip6_source_fingerprint"),
        })
    return rows


def read_catalog(store: Location) -> tuple[pd.DataFrame, str | None]:
    """The saved catalog and the snapshot it describes; an empty one (None) when absent or unreadable."""
    target = catalog_path(store)
    try:
        with store.fs.open(target.fs_path, "rb") as f:
            table = pq.read_table(f)
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return empty_catalog(), None
    snapshot = (table.schema.metadata or {}).get(SNAPSHOT_KEY)
    frame = table.to_pandas()
    if list(frame.columns) != COLUMNS or snapshot is None:
        return empty_catalog(), None
    return _typed(frame), snapshot.decode()


def build_catalog(repo: icechunk.Repository, store: Location) -> tuple[pd.DataFrame, str, set[str] | None]:
    """The catalog at the branch head, the head's snapshot, and the partitions (keys) re-read:
    None when the saved catalog already describes the head (nothing to write).

    From the saved catalog plus the experiment groups changed since its snapshot; everything when
    the saved one is missing or its snapshot is not an ancestor (a branch reset, expired history).
    """
    head = repo.lookup_branch(BRANCH)
    previous, snapshot = read_catalog(store)
    if snapshot == head:
        return previous, head, None
    states = load_store_state(repo, store).by_path  # experiment path -> (key, state)
    changed = None
    if snapshot is not None:
        try:
            changed = _changed_experiment_paths(repo, snapshot, head)
        except icechunk.IcechunkError:
            changed = None
    if changed is None:
        reread, kept = set(states), previous.iloc[0:0]
    else:
        reread = {p for p in states if p in changed or p.split("/")[0] in changed}
        paths = previous["group"].str.rsplit("/", n=1).str[0]
        kept = previous[paths.isin(set(states) - reread)]  # a partition gone from the store leaves with its rows
    session_store = repo.readonly_session(snapshot_id=head).store
    rows = [r for p in sorted(reread) for r in partition_rows(session_store, states[p][0], sorted(states[p][1].groups))]
    frame = pd.concat([kept, _typed(pd.DataFrame(rows, columns=COLUMNS))], ignore_index=True) if rows else kept
    frame = frame.sort_values(["institution", "model", "experiment", "variable"], ignore_index=True)
    return _typed(frame), head, {str(states[p][0]) for p in reread}


def write_catalog(store: Location, frame: pd.DataFrame, snapshot: str) -> str:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), SNAPSHOT_KEY: snapshot.encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    target = catalog_path(store)
    store.put_atomic(target, buffer.getvalue())
    return target.url


def availability(frame: pd.DataFrame) -> pd.DataFrame:
    """Variables stored per model (rows, ``INST_MODEL``) and experiment (columns); 0 where none."""
    if frame.empty:
        return pd.DataFrame()
    models = frame["institution"] + "_" + frame["model"]
    return pd.crosstab(models, frame["experiment"]).astype(int)


def availability_png(frame: pd.DataFrame, cell_px: int = 14) -> bytes:
    """A model x experiment picture: a cell per pair, darker for more variables, blank where none."""
    from PIL import Image, ImageDraw, ImageFont

    table = availability(frame)
    font = ImageFont.load_default(size=10)
    rows, cols = list(table.index), list(table.columns)
    left = 8 + max((int(font.getlength(r)) for r in rows), default=0)
    top = 8 + max((int(font.getlength(c)) for c in cols), default=0)
    width, height = left + cell_px * max(len(cols), 1) + 8, top + cell_px * max(len(rows), 1) + 8
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    most = max(int(table.values.max()) if table.size else 1, 1)
    for j, col in enumerate(cols):  # experiment names written upward above their column
        label = Image.new("L", (int(font.getlength(col)) + 2, cell_px), 255)
        ImageDraw.Draw(label).text((0, 1), col, fill=0, font=font)
        image.paste(label.rotate(90, expand=True), (left + j * cell_px, top - label.width - 2))
    for i, row in enumerate(rows):
        draw.text((4, top + i * cell_px + 1), row, fill=(0, 0, 0), font=font)
        for j, col in enumerate(cols):
            n = int(table.loc[row, col])
            x, y = left + j * cell_px, top + i * cell_px
            shade = (235, 235, 235) if n == 0 else tuple(int(c) for c in np.array([198, 219, 239]) + (np.array([8, 48, 107]) - [198, 219, 239]) * n / most)
            draw.rectangle([x, y, x + cell_px - 2, y + cell_px - 2], fill=shade)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
