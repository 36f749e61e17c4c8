"""Write a partition's view (views.py) into an Icechunk session, beside its variable groups.

Called by `store.commit_partition` after the variable groups of the commit are written, in the same
session, so the view and the groups it is made of land in one commit. The variables written by
this commit come from their virtual datasets in memory; the others are read back from their stored
groups: the data array's document and virtual references (Icechunk's ``array_chunk_iterator``),
and the few coordinate values (time, bounds, x, y). No source byte is read, except the values of a
time-only series stored inline that were not decoded at virtualization. Knows nothing of Dagster.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import zarr
from virtualizarr.manifests import ChunkManifest, ManifestArray
from zarr.core.buffer import default_buffer_prototype
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.core.sync import sync

from ismip6_assets.core.group_writer import array_metadata, store_rendered
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.views import NotViewable, ViewField, ViewPlan, ViewSummary, plan_view, render_view, view_group
from ismip6_assets.core.stored_coordinates import member_names
from ismip6_assets.core.virtualize import SOURCE_FINGERPRINT_ATTR, SOURCE_URL_ATTR, VirtualizedFile, one_line

_VIRTUAL = 2  # icechunk.ChunkType.virtual, as array_chunk_iterator reports it


def field_of_file(vf: VirtualizedFile) -> ViewField:
    """The view's input from a virtual dataset of this commit; raises `NotViewable`."""
    ds = vf.dataset
    if vf.variable not in ds.data_vars:
        raise NotViewable(f"the file holds no variable named {vf.variable!r}")
    var = ds.variables[vf.variable]
    if not isinstance(var.data, ManifestArray) or var.data.manifest._inlined:
        raise NotViewable("its values are stored inline, not as references")
    variables = ds.variables  # Variables, not DataArrays: no coordinate DataArrays built per file
    coords = {name: (np.asarray(variables[name].values), dict(variables[name].attrs)) for name in ("time", "x", "y") if name in variables}
    bounds = variables["time"].attrs.get("bounds") if "time" in variables else None
    if bounds and bounds in variables:
        coords["bounds"] = (np.asarray(variables[bounds].values), dict(variables[bounds].attrs))
    return ViewField(vf.variable, vf.fingerprint, vf.url, array_metadata(var), var.data.manifest, coords, values=vf.series)


async def _document(store, key: str) -> dict | None:
    buffer = await store.get(key, default_buffer_prototype())
    return None if buffer is None else json.loads(buffer.to_bytes())


async def _values(store, path: str) -> tuple[np.ndarray, dict]:
    array = await zarr.api.asynchronous.open_array(store=store, path=path, mode="r", zarr_format=3)
    return np.asarray(await array.getitem(...)), dict(array.metadata.attributes)


async def _manifest(store, path: str, metadata: ArrayV3Metadata) -> ChunkManifest:
    grid = tuple(-(-s // c) for s, c in zip(metadata.shape, metadata.chunks, strict=True))
    paths = np.full(grid, "", dtype=np.dtypes.StringDType())
    offsets = np.zeros(grid, dtype=np.uint64)
    lengths = np.zeros(grid, dtype=np.uint64)
    async for coords, kinds, locations, b_offsets, b_lengths, _inlined in store.array_chunk_iterator(path):
        if len(kinds) and (kinds != _VIRTUAL).any():
            raise NotViewable("its group holds chunks that are not virtual references")
        index = tuple(coords.T.astype(np.intp))
        paths[index] = np.array(locations, dtype=np.dtypes.StringDType())
        offsets[index] = b_offsets
        lengths[index] = b_lengths
    return ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths, validate_paths=False)


async def field_of_group(store, group: str, variable: str) -> tuple[str, ViewField | str]:
    """(fingerprint, field or the reason it is left out) of a stored variable group."""
    attrs = ((await _document(store, f"{group}/zarr.json")) or {}).get("attributes", {})
    fingerprint = str(attrs.get(SOURCE_FINGERPRINT_ATTR, ""))
    document = await _document(store, f"{group}/{variable}/zarr.json")
    if document is None or document.get("node_type") != "array":
        return fingerprint, f"the group holds no array named {variable!r}"
    metadata = ArrayV3Metadata.from_dict(document)
    try:
        manifest = await _manifest(store, f"{group}/{variable}", metadata)
    except NotViewable as exc:
        return fingerprint, str(exc)
    names = set(metadata.dimension_names or ())
    wanted = [n for n in ("time", "x", "y") if n in names]
    coords = dict(zip(wanted, await asyncio.gather(*(_values(store, f"{group}/{n}") for n in wanted))))
    bounds = coords["time"][1].get("bounds") if "time" in coords else None
    if bounds and await _document(store, f"{group}/{bounds}/zarr.json") is not None:
        coords["bounds"] = await _values(store, f"{group}/{bounds}")
    return fingerprint, ViewField(variable, fingerprint, str(attrs.get(SOURCE_URL_ATTR, "")), metadata, manifest, coords)


def build_plan(store, partition: PartitionKey, written: list[VirtualizedFile]) -> ViewPlan:
    """The plan of the view from the session's variable groups (those of `written` from memory)."""
    return plan_view(partition, *view_inputs(store, partition, written))


def view_inputs(
    store, partition: PartitionKey, written: list[VirtualizedFile]
) -> tuple[list[ViewField], dict[str, str], dict[str, str]]:
    """(fields, variables already left out with their reasons, fingerprint of every variable group)."""
    names = member_names(store, partition.group)
    fields, left_out, sources = [], {}, {}
    by_variable = {vf.variable: vf for vf in written}
    for name in names:
        if name in by_variable:
            vf = by_variable[name]
            sources[name] = vf.fingerprint
            try:
                fields.append(field_of_file(vf))
            except NotViewable as exc:
                left_out[name] = str(exc)
    stored = [n for n in names if n not in by_variable]

    async def read_stored():
        return await asyncio.gather(*(field_of_group(store, partition.variable_group(n), n) for n in stored))

    for name, (fingerprint, found) in zip(stored, sync(read_stored()) if stored else []):
        sources[name] = fingerprint
        if isinstance(found, str):
            left_out[name] = found
        else:
            fields.append(found)
    return fields, left_out, sources


def write_view(store, partition: PartitionKey, written: list[VirtualizedFile]) -> ViewPlan | None:
    """Write the partition's view into the session `store` (any previous view already deleted).

    Returns the plan written, or None when the partition holds no variable group (and so no view).
    """
    fields, left_out, sources = view_inputs(store, partition, written)
    while True:  # a series left out here must not leave its years on the axis: plan again without it
        plan = plan_view(partition, fields, left_out, sources)
        if not plan.sources:
            return None
        inline, unreadable = {}, {}
        in_hand = {f.variable: f.values for f in fields if f.values is not None}
        for name in plan.inline:  # a few numbers each, decoded at virtualization or read through the group's references
            if name in in_hand:
                inline[name] = in_hand[name]
                continue
            try:
                inline[name] = zarr.open_array(store, path=f"{partition.variable_group(name)}/{name}", mode="r", zarr_format=3)[...]
            except Exception as exc:  # noqa: BLE001 - a source that cannot be read leaves its series out, not the commit
                unreadable[name] = f"its values could not be read for the inline copy: {one_line(exc)}"
        if not unreadable:
            break
        left_out |= unreadable
        fields = [f for f in fields if f.variable not in unreadable]
    store_rendered(store, [render_view(plan, inline)])
    return plan


def read_view(store, partition: PartitionKey):
    """The `ViewSummary` of the partition's stored view, or None."""
    document = sync(_document(store, f"{view_group(partition)}/zarr.json"))
    return None if document is None else ViewSummary.from_attrs(view_group(partition), document.get("attributes", {}))
