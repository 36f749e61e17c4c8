"""Write many virtual datasets into an Icechunk session in a few batched store calls.

`vds.vz.to_icechunk` writes one group through xarray's ``to_zarr`` and zarr's synchronous API:
a round trip into zarr's event loop and Icechunk for every document of every group, which cost
more CPU than virtualizing the file (bench/throughput.py, bench/HISTORY.md). Here the same
documents are *rendered* first and then *stored* together:

- coordinates loaded inline (``time``, ``x``, ``y``, ...) are rendered by xarray's own ``to_zarr``
  into an in-memory zarr store, memoized on their exact content: the variables of a partition
  share their grid and time axis, so a partition renders them two or three times, not once a file;
- a virtual variable's ``zarr.json`` is its `ManifestArray` metadata with the dimension names and
  attributes VirtualiZarr's writer gives it (`update_attributes`, the same encoding);
- a group's ``zarr.json`` holds the dataset attributes plus ``coordinates``, as VirtualiZarr writes it.

Then every document and inline chunk of the batch goes in with one ``asyncio.gather`` per level
(groups, arrays, chunks) and the virtual references with ``set_virtual_refs_arr``, exactly as
VirtualiZarr passes them. The result is the same store content as ``to_icechunk``:
tests/test_group_writer.py compares every document and value on every quirk file. A dataset this
does not cover (a manifest with inlined chunks) goes through ``to_icechunk`` unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import pickle
import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import numpy as np
import xarray as xr
from virtualizarr.manifests import ManifestArray
from virtualizarr.writers.icechunk import ENCODING_KEYS, validate_virtual_chunk_containers
from xarray.backends.zarr import encode_zarr_attr_value
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.core.sync import sync
from zarr.storage import MemoryStore

_RENDERED_COORDINATES: OrderedDict[bytes, dict[str, bytes]] = OrderedDict()
_MAX_RENDERED = 64  # distinct coordinate sets kept (a few kB each)
_lock = threading.Lock()


@dataclasses.dataclass
class RenderedGroup:
    """One group's documents and inline chunks by store key, and its virtual references."""

    groups: dict[str, bytes]
    arrays: dict[str, bytes]
    chunks: dict[str, bytes]
    manifests: dict[str, object]  # array path -> ChunkManifest


def _encoded(attrs: dict) -> dict:
    return {k: encode_zarr_attr_value(v) for k, v in attrs.items()}


def _content_key(ds: xr.Dataset) -> bytes | None:
    """Equal keys iff every variable's name, dims, dtype, values, attributes and encoding are equal;
    None (no memo) for attributes that do not pickle."""
    parts = [(name, v.dims, v.dtype.str, v.shape, np.ascontiguousarray(v.values).tobytes(), v.attrs, v.encoding) for name, v in ds.variables.items()]
    try:
        return hashlib.blake2b(pickle.dumps(parts, protocol=5)).digest()
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


def render_coordinates(loadable: xr.Dataset) -> dict[str, bytes]:
    """The inline variables' array documents and chunks, keyed relative to their group, as xarray's
    ``to_zarr`` writes them (VirtualiZarr writes them so too); memoized on content."""
    key = _content_key(loadable)
    with _lock:
        rendered = _RENDERED_COORDINATES.get(key) if key is not None else None
        if rendered is not None:
            _RENDERED_COORDINATES.move_to_end(key)
            return rendered
    contents: dict = {}
    loadable.to_zarr(MemoryStore(contents), zarr_format=3, consolidated=False, mode="a")
    rendered = {k: v.to_bytes() for k, v in contents.items() if k != "zarr.json"}
    if key is not None:
        with _lock:
            _RENDERED_COORDINATES[key] = rendered
            while len(_RENDERED_COORDINATES) > _MAX_RENDERED:
                _RENDERED_COORDINATES.popitem(last=False)
    return rendered


def array_metadata(var: xr.Variable):
    """A virtual variable's zarr metadata as VirtualiZarr's ``require_array`` + ``update_attributes``
    write it: the `ManifestArray`'s metadata with the variable's dimension names and encoded attributes."""
    ma: ManifestArray = var.data
    attributes = _encoded(var.attrs) | {k: encode_zarr_attr_value(v) for k, v in var.encoding.items() if k in ENCODING_KEYS}
    return dataclasses.replace(ma.metadata, attributes=attributes, dimension_names=tuple(var.dims))


def metadata_document(metadata) -> bytes:
    return metadata.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes()


def _array_document(var: xr.Variable) -> bytes:
    """A virtual variable's ``zarr.json``."""
    return metadata_document(array_metadata(var))


def can_render(vds: xr.Dataset) -> bool:
    """False for what only ``to_icechunk`` handles: manifests holding inlined chunk bytes."""
    return not any(isinstance(v.data, ManifestArray) and v.data.manifest._inlined for v in vds.variables.values())


def render_group(vds: xr.Dataset, group: str) -> RenderedGroup:
    virtual = {n: v for n, v in vds.variables.items() if isinstance(v.data, ManifestArray)}
    loadable = xr.Dataset({n: v for n, v in vds.variables.items() if n not in virtual})
    rendered = RenderedGroup(groups={}, arrays={}, chunks={}, manifests={})
    group_attrs = _encoded(vds.attrs)
    if vds.coords:  # tells xarray which variables are coordinates on reopening
        group_attrs["coordinates"] = " ".join(list(vds.coords))
    rendered.groups[f"{group}/zarr.json"] = json.dumps(GroupMetadata(attributes=group_attrs).to_dict()).encode()
    for key, data in (render_coordinates(loadable).items() if loadable.variables else ()):
        (rendered.arrays if key.endswith("zarr.json") else rendered.chunks)[f"{group}/{key}"] = data
    for name, var in virtual.items():
        rendered.arrays[f"{group}/{name}/zarr.json"] = _array_document(var)
        rendered.manifests[f"{group}/{name}"] = var.data.manifest
    return rendered


async def _set_all(store, items: dict[str, bytes]) -> None:
    buffer = default_buffer_prototype().buffer
    await asyncio.gather(*(store.set(k, buffer.from_bytes(v)) for k, v in items.items()))


def write_groups(store, datasets: list[tuple[xr.Dataset, str]]) -> None:
    """Write each ``(virtual dataset, group path)`` as `to_icechunk` would, into an Icechunk session store.

    The groups must not exist yet (the caller deletes a group it replaces); their parents must.
    """
    validate_virtual_chunk_containers(store.session.config, [vds for vds, _ in datasets])
    batch = []
    for vds, group in datasets:
        if can_render(vds):
            batch.append(render_group(vds, group))
        else:
            vds.vz.to_icechunk(store, group=group)
    store_rendered(store, batch)


def store_rendered(store, batch: list[RenderedGroup]) -> None:
    """Store rendered groups in one ``asyncio.gather`` per level, then their virtual references.

    The references must point into the session's virtual chunk containers (`write_groups` checks)."""
    # A node's parent must exist before the node, and an array before its chunks.
    sync(_set_all(store, {k: v for r in batch for k, v in r.groups.items()}))
    sync(_set_all(store, {k: v for r in batch for k, v in r.arrays.items()}))
    sync(_set_all(store, {k: v for r in batch for k, v in r.chunks.items()}))
    # VirtualiZarr's default checksum: Icechunk stores whole seconds, so a file written within the
    # last second would otherwise read as modified after its reference was made.
    checked_at = datetime.now(UTC) + timedelta(seconds=1)
    for r in batch:
        for path, manifest in r.manifests.items():
            paths = manifest._paths.flatten()
            if (paths != "").any():
                store.set_virtual_refs_arr(
                    array_path=path,
                    chunk_grid_shape=manifest.shape_chunk_grid,
                    locations=paths.tolist(),
                    offsets=manifest._offsets.flatten(),
                    lengths=manifest._lengths.flatten(),
                    validate_containers=False,
                    checksum=checked_at,
                )
