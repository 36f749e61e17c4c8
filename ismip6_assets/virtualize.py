"""Virtualize archive files: one index row in, a virtual dataset or a failure record out.

A file that cannot be virtualized becomes a `FailureRecord` with a one-line reason; it never
raises, so one bad file cannot fail its partition (the upstream script lost whole batches so).
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import xarray as xr

from ismip6_assets.fixes import SourceFile, apply_fixes
from ismip6_assets.formats import UnreadableFile, detect_format, make_parser
from ismip6_assets.index import fingerprint_of
from ismip6_assets.limits import check_limits
from ismip6_assets.locations import Location, parse_location
from ismip6_assets.redact import redact

# Loaded inline (small, and needed to decode/fix); everything else stays a virtual reference.
COORDINATE_NAMES = ["time", "time_bnds", "time_bounds", "x", "y", "lat", "lon", "lat_bnds", "lon_bnds", "x_bnds", "y_bnds"]
SOURCE_URL_ATTR = "ismip6_source_url"
SOURCE_FINGERPRINT_ATTR = "ismip6_source_fingerprint"


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


@lru_cache(maxsize=8)
def _registry(source_prefix: str):
    from obspec_utils.registry import ObjectStoreRegistry

    location = parse_location(source_prefix, "source")
    return ObjectStoreRegistry({location.prefix_url: location.obstore()})


def read_head(location: Location, relpath: str) -> bytes:
    """The first 8 bytes of a source file: enough for `formats.detect_format`."""
    with location.fs.open(location.join(relpath).fs_path, "rb") as f:
        return f.read(8)


def one_line(exc: BaseException) -> str:
    """A failure reason a human reads: the exception type and the first line of its message."""
    if isinstance(exc, UnreadableFile):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}"[:300])


def virtualize_file(row: dict, source_url: str) -> VirtualizedFile | FailureRecord:
    """Virtualize the file of one index row; never raises for a bad file."""
    source = parse_location(source_url, "source")
    url = row["url"]
    relpath = source.relpath_of(url)
    try:
        file_format = detect_format(read_head(source, relpath), int(row["size"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _open(url, source.prefix_url, file_format, int(row["size"]))
        check_limits(ds)  # before any fix: a fix must never expand an absurd header
        ds, report = apply_fixes(ds, source=SourceFile(url, row["variable"], _registry(source.prefix_url)))
        # A file rewritten after indexing must not be stored under the fingerprint of the old bytes.
        now = fingerprint_of(source.fs.info(source.join(relpath).fs_path))
        if now != row["fingerprint"]:
            raise UnreadableFile(f"source changed while virtualizing (fingerprint {row['fingerprint']} -> {now})")
    except Exception as exc:  # noqa: BLE001 - every failure becomes a record, by design
        return FailureRecord(
            url=url,
            error=one_line(exc),
            institution=row["institution"],
            model_name=row["model_name"],
            experiment=row["experiment"],
            variable=row["variable"],
            fingerprint=row["fingerprint"],
            timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
    ds.attrs[SOURCE_URL_ATTR] = url
    ds.attrs[SOURCE_FINGERPRINT_ATTR] = row["fingerprint"]
    return VirtualizedFile(
        url=url,
        group=row["group"],
        variable=row["variable"],
        fingerprint=row["fingerprint"],
        file_format=file_format,
        dataset=ds,
        quirks=report.quirks,
        warnings=report.warnings,
    )


def _open(url: str, source_prefix: str, file_format: str, size: int | None = None) -> xr.Dataset:
    from virtualizarr import open_virtual_dataset

    # Names absent from a file are ignored by virtualizarr 2.8, so one list serves every file.
    return open_virtual_dataset(
        url,
        registry=_registry(source_prefix),
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
    """Virtualize many files, sequentially or through any `concurrent.futures` executor."""
    rows = list(rows)
    mapper = executor.map if executor is not None else map
    result = VirtualizationResult()
    for i, item in enumerate(mapper(virtualize_file, rows, [source.url] * len(rows)), start=1):
        (result.failures if isinstance(item, FailureRecord) else result.files).append(item)
        if progress:
            progress(i, len(rows), item)
    return result
