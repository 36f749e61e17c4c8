"""The quirk archive through the library pipeline, built once per test session, and read-back helpers.

Every quirk file is listed, virtualized and committed per partition exactly as the assets do
(`index.list_archive` → `virtualize.virtualize_rows` → `store.commit_partition`); tests then read the
store with plain icechunk + xarray (`open_plain_repo`, `open_group`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey, parse_archive_path
from ismip6_assets.core.sample_quirks import QUIRK_FILES, write_quirk_archive
from ismip6_assets.core.store import commit_partition, open_repository
from ismip6_assets.core.virtualize import FailureRecord, VirtualizedFile, virtualize_rows
from tests.conftest import open_group, open_plain_repo


@dataclass
class QuirkStore:
    archive: Path
    store: Path
    results: dict[str, VirtualizedFile | FailureRecord] = field(default_factory=dict)  # by quirk name

    def path(self, quirk: str) -> Path:
        return self.archive / "Projection-AIS" / QUIRK_FILES[quirk]

    def group(self, quirk: str) -> xr.Dataset:
        """The quirk's store group, opened the way a user would (decode_times=True)."""
        group = parse_archive_path(f"Projection-AIS/{QUIRK_FILES[quirk]}").group
        return open_group(open_plain_repo(self.store, self.archive), group)

    def source(self, quirk: str) -> xr.Dataset:
        """The source file as written, undecoded."""
        return xr.open_dataset(self.path(quirk), decode_times=False).load()


_built: dict[str, QuirkStore] = {}


def build_quirk_store(base: Path) -> QuirkStore:
    """Write the quirk archive under ``base`` and commit every partition (once per session)."""
    if "store" in _built:
        return _built["store"]
    built = QuirkStore(archive=base / "archive", store=base / "store")
    write_quirk_archive(built.archive)
    source = parse_location(str(built.archive), "source")
    repo = open_repository(parse_location(str(built.store), "store"), source)
    listing = list_archive(source)
    by_url = {f"file://{built.path(q)}": q for q in QUIRK_FILES}
    for key in listing.partitions:
        rows = listing.for_partition(key)
        result = virtualize_rows(rows[~rows["skipped"]].to_dict("records"), source)
        commit_partition(repo, PartitionKey.parse(key), result.files, [], result.failures)
        for item in [*result.files, *result.failures]:
            built.results[by_url[item.url]] = item
    _built["store"] = built
    return built


def copy_partition(quirk_archive: Path, dest: Path, partition: str) -> Path:
    """A fresh archive holding only one partition of the quirk archive (for runs through Dagster)."""
    target = dest / "Projection-AIS" / partition
    shutil.copytree(quirk_archive / "Projection-AIS" / partition, target)
    return dest


def decoded(values) -> list[tuple[int, int, int, int]]:
    """(year, month, day, hour) of decoded datetime64 values; fails on undecoded numbers."""
    values = np.asarray(values)
    assert np.issubdtype(values.dtype, np.datetime64), f"time not decoded: {values.dtype} {values}"
    return [(t.year, t.month, t.day, t.hour) for t in pd.to_datetime(values)]


def jan1(*years: int) -> list[tuple[int, int, int, int]]:
    return [(y, 1, 1, 0) for y in years]
