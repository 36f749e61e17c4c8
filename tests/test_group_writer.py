"""`group_writer.write_groups` stores exactly what VirtualiZarr's `to_icechunk` stores, faster.

The reference is the library itself: every quirk file and every sample file (NetCDF4 and NetCDF3)
is written once with ``vds.vz.to_icechunk`` and once with `write_groups`, into two real Icechunk
repositories, and every key, every ``zarr.json`` and every chunk's bytes must be equal.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import xarray as xr
import zarr
from virtualizarr.manifests import ChunkManifest, ManifestArray
from zarr.core.buffer import default_buffer_prototype

from ismip6_assets.core import group_writer
from ismip6_assets.core.group_writer import can_render, render_coordinates, write_groups
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.sample_archive import write_sample_archive
from ismip6_assets.core.sample_quirks import write_quirk_archive
from ismip6_assets.core.store import open_repository
from ismip6_assets.core.virtualize import VirtualizedFile, virtualize_file
from tests.conftest import open_group, open_plain_repo


def _virtualized(archive_dir) -> list[VirtualizedFile]:
    source = parse_location(str(archive_dir), "source")
    files = [virtualize_file(row, source) for row in list_archive(source).rows.to_dict("records")]
    return [f for f in files if isinstance(f, VirtualizedFile)]


def _written(store_dir, archive_dir, files: list[VirtualizedFile], write) -> dict:
    """Every key of the store after `write(session_store, files)` and one commit: documents as
    JSON, chunks as bytes (virtual chunks read through their references)."""
    repo = open_repository(parse_location(str(store_dir), "store"), parse_location(str(archive_dir), "source"))
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="a", zarr_format=3)
    for f in files:
        root.require_group(f.group.rsplit("/", 1)[0])
    write(session.store, files)
    session.commit("written")
    store = repo.readonly_session("main").store

    async def read_all() -> dict:
        keys = [k async for k in store.list()]
        values = await asyncio.gather(*(store.get(k, default_buffer_prototype()) for k in keys))
        return {k: json.loads(v.to_bytes()) if k.endswith("zarr.json") else v.to_bytes() for k, v in zip(keys, values)}

    return asyncio.run(read_all())


def _reference(store, files):
    for f in files:
        f.dataset.vz.to_icechunk(store, group=f.group)


def _batched(store, files):
    write_groups(store, [(f.dataset, f.group) for f in files])


@pytest.mark.parametrize("kind", ["quirks", "sample"])
def test_store_content_equals_virtualizarrs_own_writer(tmp_path, kind):
    archive_dir = tmp_path / "archive"
    (write_quirk_archive if kind == "quirks" else write_sample_archive)(archive_dir)
    files = _virtualized(archive_dir)
    formats = {f.file_format for f in files}
    assert len(files) >= 20 and formats == {"netcdf4", "netcdf3"}, (len(files), formats)

    reference = _written(tmp_path / "reference", archive_dir, files, _reference)
    batched = _written(tmp_path / "batched", archive_dir, files, _batched)

    assert sorted(batched) == sorted(reference)
    differing = [k for k in reference if batched[k] != reference[k]]
    assert not differing, [(k, reference[k], batched[k]) for k in differing[:3]]
    # Virtual chunks were compared too (read through their references), not only documents.
    assert sum(1 for k in reference if "/c/" in k) > 3 * len(files)


def test_coordinates_are_memoized_on_content_not_on_names(sample_files):
    group_writer._RENDERED_COORDINATES.clear()
    ds = next(f.dataset for f in sample_files if "x" in f.dataset.variables)
    coords = xr.Dataset({n: ds[n].variable for n in ("x", "y", "time")})
    first = render_coordinates(coords)
    assert render_coordinates(coords.copy(deep=True)) is first  # equal content: rendered once

    shifted = coords.assign_coords(x=coords["x"] + 1.0)
    assert render_coordinates(shifted)["x/c/0"] != first["x/c/0"]
    relabelled = coords.copy()
    relabelled["time"].attrs["units"] = "days since 1950-01-01"
    assert json.loads(render_coordinates(relabelled)["time/zarr.json"])["attributes"]["units"] == "days since 1950-01-01"
    assert json.loads(first["time/zarr.json"])["attributes"]["units"] != "days since 1950-01-01"


@pytest.fixture
def sample_files(tmp_path):
    write_sample_archive(tmp_path / "archive")
    return _virtualized(tmp_path / "archive")


def test_manifest_with_inlined_chunks_goes_through_to_icechunk(tmp_path):
    """VirtualiZarr can hold chunk bytes in the manifest; those are left to its own writer, and the
    values read back equal the source."""
    archive_dir = tmp_path / "archive"
    write_sample_archive(archive_dir)
    f = next(f for f in _virtualized(archive_dir) if f.file_format == "netcdf4" and f.dataset[f.variable].ndim == 3)
    ma: ManifestArray = f.dataset[f.variable].data
    manifest = ma.manifest
    path = manifest._paths.flat[0]
    offset, length = int(manifest._offsets.flat[0]), int(manifest._lengths.flat[0])
    with open(path.removeprefix("file://"), "rb") as fh:
        fh.seek(offset)
        first_chunk = fh.read(length)
    paths = manifest._paths.copy()
    paths.flat[0] = "__inlined__"
    inlined = ChunkManifest.from_arrays(
        paths=paths, offsets=manifest._offsets, lengths=manifest._lengths, inlined={np.unravel_index(0, paths.shape): first_chunk}
    )
    ds = f.dataset.copy()
    ds[f.variable] = ds[f.variable].copy(data=ManifestArray(metadata=ma.metadata, chunkmanifest=inlined))
    assert not can_render(ds)

    store_dir = tmp_path / "store"
    repo = open_repository(parse_location(str(store_dir), "store"), parse_location(str(archive_dir), "source"))
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a", zarr_format=3).require_group(f.group.rsplit("/", 1)[0])
    write_groups(session.store, [(ds, f.group)])
    session.commit("inlined")

    stored = open_group(open_plain_repo(store_dir, archive_dir), f.group)
    with xr.open_dataset(f.url.removeprefix("file://")) as source:
        np.testing.assert_array_equal(stored[f.variable].values, source[f.variable].values)
