"""Deep verification: do a partition's stored chunk references still read the source's values?

The shallow reconciliation trusts fingerprints (mtime+size on local disks): a file rewritten in
place with its size and mtime kept, or a reference written wrong, passes it. This reads a sample
of each group's virtual chunks through the store and compares one decoded chunk per variable with
the source opened by `xr.open_dataset`.

Icechunk 2.3 has no public getter for a virtual ref's offset and length, so "the byte range lies
inside the file" is checked by reading the chunk's raw bytes through the store: that fetches
exactly ``[offset, offset + length)`` of the source and fails when the range runs past its end.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import icechunk
import numpy as np
import xarray as xr
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ismip6_assets.locations import Location
from ismip6_assets.store import BRANCH
from ismip6_assets.store_state import PartitionState
from ismip6_assets.virtualize import one_line


# The fingerprint still matches, so no run rewrites such a group by itself: a changed fingerprint
# (touch the file) or the group gone (missing) is what makes the sensor request its rewrite.
REPAIR_HINT = "bad_ref: the source changed under an unchanged fingerprint; touch the file (or delete the group) and the next run rewrites it"


@dataclass
class Verification:
    """What the deep check read, and each group whose references do not match the source."""

    groups: int = 0
    chunks: int = 0
    findings: list[dict] = field(default_factory=list)  # rows: category "bad_ref", item, reason


def sample_chunks(shape: tuple[int, ...], chunks: tuple[int, ...], n: int = 3) -> list[tuple[int, ...]]:
    """First, middle and last chunk of the grid: the last is where a truncated file shows."""
    grid = [max(1, math.ceil(s / c)) for s, c in zip(shape, chunks, strict=True)]
    total = math.prod(grid)
    picks = sorted({0, total // 2, total - 1})[-n:] if n > 0 else []
    return [tuple(int(i) for i in np.unravel_index(p, grid)) for p in picks]


def _open_source(source: Location, url: str) -> xr.Dataset:
    target = source.join(source.relpath_of(url)).fs_path
    opened = target if source.scheme == "file" else source.fs.open(target, "rb")
    return xr.open_dataset(opened, decode_times=False)


def verify_group(session: icechunk.Session, source: Location, group: str, url: str, chunks_per_array: int = 3) -> tuple[int, list[dict]]:
    """Read sampled chunks of each virtual array of `group`; return (chunks read, findings)."""
    stored = zarr.open_group(session.store, path=group, mode="r", zarr_format=3)
    read, findings = 0, []
    for name, array in stored.arrays():
        # Only virtual chunks point into the source; inline/native ones (coordinates) are our bytes.
        sampled = [
            c for c in (sample_chunks(array.shape, array.chunks, chunks_per_array) if array.ndim else [])
            if session.chunk_type(f"/{group}/{name}", list(c)) == icechunk.ChunkType.virtual
        ]
        for coords in sampled:
            key = f"{group}/{name}/c/" + "/".join(map(str, coords))
            try:
                sync(session.store.get(key, default_buffer_prototype()))
                read += 1
            except Exception as exc:  # noqa: BLE001 - any read error is the finding
                findings.append({"category": "bad_ref", "item": f"{group}/{name}", "reason": f"chunk {coords} unreadable: {one_line(exc)}"})
                break
        else:
            if sampled and (problem := _compare_chunk(session, source, group, name, url, array.chunks, sampled[-1])):
                findings.append({"category": "bad_ref", "item": f"{group}/{name}", "reason": problem})
    return read, findings


def _compare_chunk(session, source: Location, group: str, name: str, url: str, chunks, coords) -> str:
    """'' when the chunk decodes to the source's values, else why not."""
    region = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = xr.open_zarr(session.store, group=group, consolidated=False, decode_times=False)
        with _open_source(source, url) as original:
            if name not in original:
                return f"{name} not in the source file"
            region = {d: slice(i * c, (i + 1) * c) for d, i, c in zip(original[name].dims, coords, chunks, strict=True)}
            expected = original[name].isel(region).values
        try:
            actual = stored[name].isel(region).values
        except Exception as exc:  # noqa: BLE001
            return f"chunk {tuple(coords)} does not decode: {one_line(exc)}"
    if actual.shape != expected.shape or not np.array_equal(actual, expected, equal_nan=actual.dtype.kind == "f"):
        return f"chunk {tuple(coords)} decodes to other values than the source"
    return ""


def verify_partition(
    repo: icechunk.Repository, source: Location, state: PartitionState, urls: Iterable[str], chunks_per_array: int = 3
) -> Verification:
    """Deep-check the partition's groups built from `urls` (those reconciliation found current)."""
    wanted = set(urls)
    session = repo.readonly_session(branch=BRANCH)
    result = Verification()
    for stored in sorted(state.groups.values(), key=lambda g: g.group):
        if stored.url not in wanted:
            continue
        try:
            read, findings = verify_group(session, source, stored.group, stored.url, chunks_per_array)
        except Exception as exc:  # noqa: BLE001 - a source that no longer opens is a finding, not a crashed check
            read, findings = 0, [{"category": "bad_ref", "item": stored.group, "reason": f"could not verify: {one_line(exc)}"}]
        result.groups += 1
        result.chunks += read
        result.findings += findings
    return result
