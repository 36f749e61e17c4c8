"""Virtualize archive files: one index row in, a virtual dataset or a failure record out.

A file that cannot be virtualized becomes a `FailureRecord` with a one-line reason; it never
raises, so one bad file cannot fail its partition (the upstream script lost whole batches so).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import numpy as np
import xarray as xr

from ismip6_assets.core.fixes import SourceFile, apply_fixes
from ismip6_assets.core.fixes.borrowed_time import borrow_time_axes
from ismip6_assets.core.formats import UnreadableFile, detect_format, make_parser
from ismip6_assets.core.index import fingerprint_of
from ismip6_assets.core.limits import check_limits
from ismip6_assets.core.locations import Location
from ismip6_assets.core.redact import redact
from ismip6_assets.core.series_values import series_values
from ismip6_assets.core.source_reads import OneFileStore, prefetch

K = TypeVar("K")

# Loaded inline (small, and needed to decode/fix); everything else stays a virtual reference.
COORDINATE_NAMES = ["time", "time_bnds", "time_bounds", "x", "y", "lat", "lon", "lat_bnds", "lon_bnds", "x_bnds", "y_bnds"]
SOURCE_URL_ATTR = "ismip6_source_url"
SOURCE_FINGERPRINT_ATTR = "ismip6_source_fingerprint"
SOURCE_FORMAT_ATTR = "ismip6_source_format"  # netcdf4 / netcdf3, for the catalog


@dataclass
class VirtualizedFile:
    url: str
    group: str
    variable: str
    fingerprint: str
    file_format: str
    dataset: xr.Dataset
    quirks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # A time-only variable's raw values, decoded from the head already read (series_values.py);
    # None for a field, or when they could not be decoded without another request.
    series: np.ndarray | None = None

    @property
    def chunk_refs(self) -> int:
        from virtualizarr.manifests import ManifestArray

        return sum(
            sum(1 for _ in v.data.manifest.iter_nonempty_paths())
            for v in self.dataset.variables.values()
            if isinstance(v.data, ManifestArray)
        )


@dataclass
class FailureRecord:
    url: str
    error: str
    institution: str
    model_name: str
    experiment: str
    variable: str = ""
    fingerprint: str = ""
    timestamp: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VirtualizationResult:
    files: list[VirtualizedFile] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)


def file_store(row: dict, source: Location, head: bytes | None = None) -> OneFileStore:
    """The reads of one indexed file (see source_reads.py): head once (`head`: already fetched),
    pinned to its fingerprint."""
    from obspec_utils.registry import ObjectStoreRegistry

    store = source.read_store
    _, path = ObjectStoreRegistry({source.prefix_url: store}).resolve(row["url"])
    return OneFileStore(store, path, int(row["size"]), source.pinned_read_options(row["fingerprint"]), head=head)


def virtualize_with_head(row: dict, source: Location, head: bytes | None) -> VirtualizedFile | FailureRecord:
    """`virtualize_file` with the file's head its caller fetched (None: fetched here), in a pool's worker."""
    return virtualize_file(row, source, file_store(row, source, head))


def _registry(source: Location, reads: OneFileStore):
    from obspec_utils.registry import ObjectStoreRegistry

    return ObjectStoreRegistry({source.prefix_url: reads})


def _series_in_head(ds: xr.Dataset, variable: str, registry, reads: OneFileStore) -> np.ndarray | None:
    """`variable`'s raw values when it is a time-only series whose chunks all lie in the file's
    head, decoded without a request (series_values.py); None otherwise, or if decoding fails."""
    from virtualizarr.manifests import ManifestArray

    var = ds.variables.get(variable)
    if var is None or var.dims != ("time",) or not isinstance(var.data, ManifestArray) or var.data.manifest._inlined:
        return None

    def from_head(url: str, start: int, end: int) -> bytes | None:
        store, path = registry.resolve(url)
        return store.get_range(path, start=start, end=end) if store is reads and end <= reads.head_length else None

    try:
        return series_values(var.data, from_head)
    except Exception:  # noqa: BLE001 - the view then keeps the series' references, as before
        return None


def one_line(exc: BaseException) -> str:
    """A failure reason a human reads: the exception type and the first line of its message."""
    if isinstance(exc, UnreadableFile):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}"[:300])


def virtualize_file(row: dict, source: Location, reads: OneFileStore | None = None) -> VirtualizedFile | FailureRecord:
    """Virtualize the file of one index row; never raises for a bad file.

    Every byte is read through `reads` (default: `file_store`): one request for the head serves
    the format sniff, the parse and the coordinates in it, and each read is pinned to the indexed
    fingerprint where the location can pin reads.
    """
    url = row["url"]
    reads = reads or file_store(row, source)
    pinned = source.pinned_read_options(row["fingerprint"]) is not None
    try:
        try:
            file_format = detect_format(reads.header()[:8] if int(row["size"]) else b"", int(row["size"]))
            registry = _registry(source, reads)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = _open(url, registry, file_format, int(row["size"]))
            check_limits(ds)  # before any fix: a fix must never expand an absurd header
            ds, report = apply_fixes(ds, source=SourceFile(url, row["variable"], registry))
        except FileNotFoundError as exc:
            if pinned:  # the indexed generation is gone: the object was rewritten or deleted since
                raise UnreadableFile(f"source changed while virtualizing (fingerprint {row['fingerprint']} is gone)") from exc
            raise
        if not pinned:
            # A file rewritten after indexing must not be stored under the fingerprint of the old bytes.
            now = fingerprint_of(source.fs.info(source.join(source.relpath_of(url)).fs_path))
            if now != row["fingerprint"]:
                raise UnreadableFile(f"source changed while virtualizing (fingerprint {row['fingerprint']} -> {now})")
    except Exception as exc:  # noqa: BLE001 - every failure becomes a record, by design
        return failure_record(row, one_line(exc))
    ds.attrs[SOURCE_URL_ATTR] = url
    ds.attrs[SOURCE_FINGERPRINT_ATTR] = row["fingerprint"]
    ds.attrs[SOURCE_FORMAT_ATTR] = file_format
    return VirtualizedFile(
        series=_series_in_head(ds, row["variable"], registry, reads),
        url=url,
        group=row["group"],
        variable=row["variable"],
        fingerprint=row["fingerprint"],
        file_format=file_format,
        dataset=ds,
        quirks=report.quirks,
        warnings=report.warnings,
    )


def failure_record(row: dict, error: str) -> FailureRecord:
    """The failure record of one index row's file, with a one-line reason."""
    return FailureRecord(
        url=row["url"],
        error=error,
        institution=row["institution"],
        model_name=row["model_name"],
        experiment=row["experiment"],
        variable=row["variable"],
        fingerprint=row["fingerprint"],
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def _open(url: str, registry, file_format: str, size: int | None = None) -> xr.Dataset:
    from virtualizarr import open_virtual_dataset

    # Names absent from a file are ignored by virtualizarr 2.8, so one list serves every file.
    return open_virtual_dataset(
        url,
        registry=registry,
        parser=make_parser(file_format, size),
        loadable_variables=list(COORDINATE_NAMES),
        decode_times=False,
    )


def virtualize_rows(
    rows: Iterable[dict],
    source: Location,
    executor: Executor | None = None,
    progress: Callable[[int, int, VirtualizedFile | FailureRecord], None] | None = None,
) -> VirtualizationResult:
    """Virtualize many files, sequentially or through any `concurrent.futures` executor.

    Inline (no executor), and through an executor when the source is on object storage, the heads
    of all files are fetched at once first (`source_reads.prefetch`): the partition waits on one
    round trip for them instead of one a file. The parses then run one after another, or in the
    executor's workers, which receive each head with its row. On local disk a read is no round
    trip, so an executor's workers read their files themselves. Then a file whose time is not
    dates takes the axis of the files virtualized with it (`fixes.borrowed_time`), or becomes a
    `FailureRecord` saying why.
    """
    rows = list(rows)
    return _collected(rows, _started(rows, source, executor), progress)


def virtualize_partitions(
    batches: Iterable[tuple[K, Iterable[dict]]], source: Location, executor: Executor | None = None
) -> Iterator[tuple[K, VirtualizationResult]]:
    """`virtualize_rows` of each (key, rows) batch, yielded in order; through an executor, each
    batch's files are handed to it (on object storage, their heads fetched) before the last batch's
    results are collected, so its workers do not wait between partitions for the slowest file of
    the last one or for the next one's heads."""
    if executor is None:  # inline: nothing runs ahead
        for key, rows in batches:
            yield key, virtualize_rows(rows, source)
        return
    started: tuple[K, list[dict], Iterator] | None = None
    for key, rows in batches:
        rows = list(rows)
        following = (key, rows, _started(rows, source, executor))
        if started is not None:
            yield started[0], _collected(started[1], started[2])
        started = following
    if started is not None:
        yield started[0], _collected(started[1], started[2])


def _started(rows: list[dict], source: Location, executor: Executor | None) -> Iterator[VirtualizedFile | FailureRecord]:
    """The files' virtualizations, submitted to `executor` now (inline: as they are consumed)."""
    if executor is not None and source.scheme == "file":
        return executor.map(virtualize_file, rows, [source] * len(rows))
    reads = [file_store(row, source) for row in rows]
    prefetch(r for row, r in zip(rows, reads) if int(row["size"]))
    if executor is None:
        return map(virtualize_file, rows, [source] * len(rows), reads)
    return executor.map(virtualize_with_head, rows, [source] * len(rows), [r.prefetched for r in reads])


def _collected(rows: list[dict], items: Iterator, progress: Callable | None = None) -> VirtualizationResult:
    result = VirtualizationResult()
    for i, item in enumerate(items, start=1):
        (result.failures if isinstance(item, FailureRecord) else result.files).append(item)
        if progress:
            progress(i, len(rows), item)
    # A time that is not dates takes the axis of the files virtualized beside it, or the file fails.
    refused = borrow_time_axes(result.files)
    if refused:
        by_url = {row["url"]: row for row in rows}
        result.failures += [failure_record(by_url[url], redact(error)) for url, error in refused.items()]
        result.files = [f for f in result.files if f.url not in refused]
    return result
