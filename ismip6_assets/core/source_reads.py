"""One source file's reads while it is virtualized: its head fetched once, every read pinned.

VirtualiZarr's parsers read through an obspec store: a ``head`` for the size, then 1 MiB blocks
(`obspec_utils.readers.BlockStoreReader`), and the coordinates loaded inline are separate range
reads. Against GCS each is a round trip. `OneFileStore` wraps the source store for one file:

- the file's first `HEAD_BYTES` (BlockStoreReader's own block size) are fetched in one request,
  which serves the format sniff, the parser's header reads and the coordinate chunks that lie in it
  (on the benchmark's files, everything: one request a file);
- ``head`` answers from the index row (its size), with no request;
- every request carries the location's pinned options (`Location.pinned_read_options`): on GCS
  ``generation=N`` of the fingerprint the file was indexed with, so a file rewritten after it was
  listed, or while it is read, fails with FileNotFoundError instead of being stored under the old
  fingerprint, and no second look at the object is needed.

`prefetch` fetches the heads of many files at once (asyncio over obstore), so a partition waits
for one round trip, not one per file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence

HEAD_BYTES = 1024 * 1024
PREFETCH_CONCURRENCY = 32


class OneFileStore:
    """An obspec store (Get, GetRange(s), Head, sync and async) for the object `path` of `store`."""

    def __init__(self, store, path: str, size: int, options: dict | None = None, head: bytes | None = None) -> None:
        self._store, self._path, self._size = store, path, size
        self._options = options or {}
        self._head = head

    # VirtualiZarr's ManifestStore strips the store's prefix from chunk paths.
    @property
    def prefix(self):
        return getattr(self._store, "prefix", None)

    @property
    def head_length(self) -> int:
        return min(HEAD_BYTES, self._size)

    @property
    def prefetched(self) -> bytes | None:
        """The head fetched so far (None: not yet, or its fetch failed)."""
        return self._head

    def header(self) -> bytes:
        """The file's first `HEAD_BYTES` (all of a smaller file), fetched on first use."""
        if self._head is None:
            self._head = self._fetch(0, self.head_length) if self._size else b""
        return self._head

    async def header_async(self) -> bytes:
        if self._head is None:
            self._head = await self._fetch_async(0, self.head_length) if self._size else b""
        return self._head

    def _fetch(self, start: int, end: int) -> bytes:
        import obstore

        return bytes(obstore.get(self._store, self._path, options={**self._options, "range": (start, end)}).bytes())

    async def _fetch_async(self, start: int, end: int) -> bytes:
        import obstore

        result = await obstore.get_async(self._store, self._path, options={**self._options, "range": (start, end)})
        return bytes(await result.bytes_async())

    def _end(self, start: int, end: int | None, length: int | None) -> int:
        return end if end is not None else start + length if length is not None else self._size

    def _cached(self, path: str, start: int, end: int) -> bytes | None:
        if path == self._path and end <= self.head_length:
            return self.header()[start:end]
        return None

    def _other(self, path: str) -> None:
        if path != self._path:
            raise FileNotFoundError(f"{path}: this store reads only {self._path}")

    # --- obspec -----------------------------------------------------------------------------------

    def head(self, path: str) -> dict:
        self._other(path)
        return {"path": path, "size": self._size, "last_modified": dt.datetime.fromtimestamp(0, dt.UTC), "e_tag": None,
                "version": self._options.get("version")}

    async def head_async(self, path: str) -> dict:
        return self.head(path)

    def get_range(self, path: str, *, start: int, end: int | None = None, length: int | None = None) -> bytes:
        self._other(path)
        end = self._end(start, end, length)
        cached = self._cached(path, start, end)
        return cached if cached is not None else self._fetch(start, end)

    async def get_range_async(self, path: str, *, start: int, end: int | None = None, length: int | None = None) -> bytes:
        self._other(path)
        end = self._end(start, end, length)
        if path == self._path and end <= self.head_length:
            return (await self.header_async())[start:end]
        return await self._fetch_async(start, end)

    def get_ranges(self, path: str, *, starts: Sequence[int], ends: Sequence[int] | None = None,
                   lengths: Sequence[int] | None = None) -> list[bytes]:
        self._other(path)
        ends = list(ends) if ends is not None else [s + n for s, n in zip(starts, lengths or [], strict=True)]
        return [self.get_range(path, start=s, end=e) for s, e in zip(starts, ends, strict=True)]

    async def get_ranges_async(self, path: str, *, starts: Sequence[int], ends: Sequence[int] | None = None,
                               lengths: Sequence[int] | None = None) -> list[bytes]:
        self._other(path)
        ends = list(ends) if ends is not None else [s + n for s, n in zip(starts, lengths or [], strict=True)]
        return list(await asyncio.gather(*(self.get_range_async(path, start=s, end=e) for s, e in zip(starts, ends, strict=True))))

    def get(self, path: str, *, options: dict | None = None):
        import obstore

        self._other(path)
        return obstore.get(self._store, path, options={**(options or {}), **self._options})

    async def get_async(self, path: str, *, options: dict | None = None):
        import obstore

        self._other(path)
        return await obstore.get_async(self._store, path, options={**(options or {}), **self._options})


def prefetch(files: Iterable[OneFileStore], concurrency: int = PREFETCH_CONCURRENCY) -> list[BaseException | None]:
    """Fetch the heads of `files` concurrently; per file None, or the error its fetch raised
    (left for the file's own virtualization to report: it fetches again and fails the same way)."""
    files = list(files)

    async def run() -> list:
        gate = asyncio.Semaphore(concurrency)

        async def one(f: OneFileStore):
            async with gate:
                await f.header_async()

        return await asyncio.gather(*(one(f) for f in files), return_exceptions=True)

    return list(asyncio.run(run())) if files else []
