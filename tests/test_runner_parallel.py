"""`run_archive` in persistent worker processes, refreshes that run only what changed, and the
one-pass `reconcile_archive` agreeing with the per-partition check's diff."""

from __future__ import annotations

import os

import pytest

from ismip6_assets.locations import parse_location
from ismip6_assets.paths import PartitionKey
from ismip6_assets.reconcile import partition_diff
from ismip6_assets.runner import partition_workers, plan_archive, reconcile_archive, run_archive
from ismip6_assets.settings import PARTITION_WORKERS_ENV
from tests.conftest import open_group, open_plain_repo


@pytest.mark.slow
def test_partitions_in_worker_processes_then_a_refresh_runs_only_the_changed_one(archive, archive_dir, store_dir, instance):
    outcomes = run_archive(archive, instance, workers=2)
    assert {o.status for o in outcomes} == {"OK"}, [(o.partition, o.status, o.findings) for o in outcomes]
    assert all(o.ran for o in outcomes) and sum(o.written for o in outcomes) == 29
    # The workers ran through this instance: one run per partition, as from the UI.
    runs = instance.get_runs()
    assert len([r for r in runs if r.job_name == "materialize_partition"]) == len(outcomes)
    assert [r.job_name for r in runs if r.job_name != "materialize_partition"] == ["refresh_catalog"]  # once, after the commits
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


@pytest.mark.slow
def test_a_worker_killed_mid_partition_is_retried_once_and_lands(archive_dir, store_dir, tmp_path):
    """A worker SIGKILLed after writing a partition's groups, before its commit (a native crash):
    the partition is run again, once, in a fresh pool, and lands with one commit; the store then
    holds every partition exactly as the source."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import dagster as dg
    import numpy as np
    import xarray as xr

    import shutil

    for folder in (archive_dir / "Projection-AIS").glob("*/*/*"):  # two partitions: one per worker
        if folder.relative_to(archive_dir / "Projection-AIS").as_posix() not in ("AWI/PISM1/exp05", "DOE/MALI/expA1"):
            shutil.rmtree(folder)
    home, marker = tmp_path / "dagster_home", tmp_path / "killed"
    home.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.worker_kill_driver", str(archive_dir), str(store_dir), str(home), str(marker)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,  # before the fix: the pool waited forever
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    outcomes = {o["partition"]: o for o in map(json.loads, proc.stdout.strip().splitlines())}
    assert marker.exists(), "no worker was killed"
    victim = marker.read_text()  # INST_MODEL/EXP
    victim_key = next(k for k in outcomes if PartitionKey.parse(k).group == victim)
    assert {o["status"] for o in outcomes.values()} == {"OK"}, outcomes
    assert outcomes[victim_key]["written"] > 0

    # Retried once: the killed run (left STARTED: its process is gone) and one that succeeded.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = [r for r in instance.get_runs() if r.tags.get("dagster/partition") == victim_key]
    assert sorted(r.status.value for r in runs) == ["STARTED", "SUCCESS"], [r.status for r in runs]

    repo = open_plain_repo(store_dir, archive_dir)
    commits = [s.metadata["partition"] for s in repo.ancestry(branch="main") if (s.metadata or {}).get("partition")]
    assert sorted(commits) == sorted(outcomes)  # one commit each, the victim's included, nothing of the killed run
    source = parse_location(str(archive_dir), "source")
    diffs = plan_archive(source, parse_location(str(store_dir), "store"), read_only=True)
    assert {d.status for d in diffs.values()} == {"OK"}, {k: d.counts() for k, d in diffs.items()}
    key = PartitionKey.parse(victim_key)
    for path in (archive_dir / "Projection-AIS" / victim_key).glob("*.nc"):
        variable = path.name.split("_AIS_")[0]
        stored = xr.open_zarr(repo.readonly_session("main").store, group=key.variable_group(variable), consolidated=False)
        with xr.open_dataset(path) as original:
            np.testing.assert_array_equal(stored[variable].values, original[variable].values)


def test_one_worker_more_than_cpus(monkeypatch):
    monkeypatch.delenv(PARTITION_WORKERS_ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert partition_workers(20) == 3  # commits take turns and round trips wait: a CPU idles otherwise
    assert partition_workers(3) == 1  # few runs: in-process
    monkeypatch.setenv(PARTITION_WORKERS_ENV, "5")
    assert partition_workers(20) == 5 and partition_workers(3) == 3


def test_workers_fork_from_a_server_that_preloaded_the_libraries_but_not_icechunk():
    # A fork after Icechunk's import inherits its Tokio threads dead (the child's first
    # Repository.open hung); a preload that failed would be skipped silently, workers then slow.
    from concurrent.futures import ProcessPoolExecutor

    from ismip6_assets import worker_preload
    from ismip6_assets.runner import _worker_context

    with ProcessPoolExecutor(1, mp_context=_worker_context()) as pool:
        assert pool.submit(worker_preload.loaded).result() == {"preload": True, "icechunk": False, "virtualizarr": True}
