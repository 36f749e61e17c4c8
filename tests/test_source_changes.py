"""A source file rewritten between indexing and virtualizing is detected, never stored under the old fingerprint."""

from __future__ import annotations

import os

from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.reconcile import commit_plan, partition_diff, store_diff
from ismip6_assets.core.store import commit_partition, open_repository
from ismip6_assets.core.store_state import read_partition_state
from ismip6_assets.core.virtualize import FailureRecord, virtualize_rows

KEY = PartitionKey("AWI", "PISM1", "exp05")


def test_file_rewritten_after_indexing_is_a_failure_not_a_stale_group(archive_dir, store_dir):
    source, store = parse_location(str(archive_dir), "source"), parse_location(str(store_dir), "store")
    rows = list_archive(source, KEY).rows  # the index, taken before the change
    changed = archive_dir / "Projection-AIS/AWI/PISM1/exp05/lithk_AIS_AWI_PISM1_exp05.nc"
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # rewritten 5 s later

    result = virtualize_rows(rows.to_dict("records"), source)

    (failure,) = result.failures
    assert isinstance(failure, FailureRecord) and failure.url.endswith(changed.name)
    assert "source changed" in failure.error
    repo = open_repository(store, source)
    diff = store_diff(KEY, rows, read_partition_state(repo, KEY))
    plan = commit_plan(diff, result.files, result.failures)
    commit_partition(repo, KEY, plan.write, plan.remove, plan.failures)
    assert "lithk" not in read_partition_state(repo, KEY).groups

    # A fresh listing sees the new fingerprint: the file is missing (ERROR), not "failed".
    _, now = partition_diff(source, store, KEY, repo=repo)
    assert now.status == "ERROR" and [u.rsplit("/", 1)[-1] for u in now.missing] == [changed.name]
