"""`run_archive` in persistent worker processes, refreshes that run only what changed, and the
one-pass `reconcile_archive` agreeing with the per-partition check's diff."""

from __future__ import annotations

import os

import pytest

from ismip6_assets.locations import parse_location
from ismip6_assets.paths import PartitionKey
from ismip6_assets.reconcile import partition_diff
from ismip6_assets.runner import plan_archive, reconcile_archive, run_archive
from tests.conftest import open_group, open_plain_repo


@pytest.mark.slow
def test_partitions_in_worker_processes_then_a_refresh_runs_only_the_changed_one(archive, archive_dir, store_dir, instance):
    outcomes = run_archive(archive, instance, workers=2)
    assert {o.status for o in outcomes} == {"OK"}, [(o.partition, o.status, o.findings) for o in outcomes]
    assert all(o.ran for o in outcomes) and sum(o.written for o in outcomes) == 28
    # The workers ran through this instance: one run per partition, as from the UI.
    assert len(instance.get_runs()) == len(outcomes)
    repo = open_plain_repo(store_dir, archive_dir)
    commits = [s for s in repo.ancestry(branch="main") if (s.metadata or {}).get("partition")]
    assert sorted(s.metadata["partition"] for s in commits) == sorted(o.partition for o in outcomes)  # one commit each

    changed = archive_dir / "Projection-AIS/DOE/MALI/expA1/orog_AIS_DOE_MALI_expA1.nc"
    mtime = changed.stat().st_mtime
    os.utime(changed, (mtime - 100, mtime - 100))  # other bytes as far as the fingerprint can tell
    again = run_archive(archive, instance, workers=2)
    assert [o.partition for o in again if o.ran] == ["DOE/MALI/expA1"]
    assert {o.status for o in again} == {"OK"} and sum(o.written for o in again) == 1
    assert open_group(open_plain_repo(store_dir, archive_dir), "DOE_MALI/expA1/orog").attrs["ismip6_source_fingerprint"].startswith("mtime:")

    nothing = run_archive(archive, instance)
    assert not any(o.ran for o in nothing) and {o.status for o in nothing} == {"OK"}


def test_one_pass_reconcile_agrees_with_the_per_partition_diff(archive, archive_dir, store_dir, instance):
    source, store = parse_location(str(archive_dir), "s"), parse_location(str(store_dir), "t")
    run_archive(archive, instance, workers=1)
    (archive_dir / "Projection-AIS/DOE/MALI/expA1/orog_AIS_DOE_MALI_expA1.nc").unlink()
    diffs = reconcile_archive(source, store)
    assert [d.partition for d in diffs] == sorted(plan_archive(source, store))
    for diff in diffs:
        _, single = partition_diff(source, store, PartitionKey.parse(diff.partition))
        assert diff.counts() == single.counts() and diff.status == single.status, diff.partition
    assert {d.partition: d.status for d in diffs if d.status != "OK"} == {"DOE/MALI/expA1": "ERROR"}
