"""kill -9 at several points of a run: the store stays at its last commit and the next run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import zarr

from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.cli.runs import run_partition
from tests.conftest import open_plain_repo

REPO = Path(__file__).resolve().parents[1]
DONE = "AWI/PISM1/ctrl_proj_std"
VICTIM = "UCIJPL/ISSM/exp13"


def groups_of(repo, path: str) -> set[str]:
    try:
        return set(zarr.open_group(repo.readonly_session("main").store, path=path, mode="r").group_keys())
    except FileNotFoundError:
        return set()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["virtualize", "write", "commit"])
def test_kill_minus_nine_loses_nothing(point, archive, archive_dir, store_dir, tmp_path):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("model_experiment", [DONE, VICTIM])
        assert run_partition(archive, instance, DONE).status == "OK"
        head_before = open_plain_repo(store_dir, archive_dir).lookup_branch("main")

        marker = tmp_path / "parked"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.pause_driver", str(archive_dir), str(store_dir), VICTIM, point, str(marker)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not marker.exists():
                assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
                assert time.monotonic() < deadline, "driver never reached its pause point"
                time.sleep(0.1)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        # The repository is readable at its last commit; nothing of the killed run is on main.
        repo = open_plain_repo(store_dir, archive_dir)
        assert repo.lookup_branch("main") == head_before
        assert groups_of(repo, "UCIJPL_ISSM/exp13") == set()
        assert groups_of(repo, "AWI_PISM1/ctrl_proj_std") == {"lithk", "orog", "acabf", "lim", "sftgif", "sftgrf"}

        # The next run completes the partition, every file present exactly once.
        outcome = run_partition(archive, instance, VICTIM)
        assert outcome.status == "OK", outcome.findings
        repo = open_plain_repo(store_dir, archive_dir)
        assert groups_of(repo, "UCIJPL_ISSM/exp13") == {"lithk", "acabf", "base", "lim"}
        session = repo.readonly_session("main")
        urls = [zarr.open_group(session.store, path=f"UCIJPL_ISSM/exp13/{v}", mode="r").attrs["ismip6_source_url"] for v in ("lithk", "acabf", "base", "lim")]
        assert len(set(urls)) == 4


def start_parked(archive_dir, store_dir, partition, point, marker):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.pause_driver", str(archive_dir), str(store_dir), partition, point, str(marker)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "driver never reached its pause point"
        time.sleep(0.1)
    return proc


@pytest.mark.slow
def test_second_local_writer_waits_then_is_refused_naming_the_store(archive, archive_dir, store_dir, tmp_path):
    archive = ArchiveResource(source_url=archive.source_url, store_url=archive.store_url, writer_wait_seconds="1")
    proc = start_parked(archive_dir, store_dir, VICTIM, "commit", tmp_path / "parked")
    try:
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("model_experiment", [DONE])
            outcome = run_partition(archive, instance, DONE)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert outcome.status == "FAILED"
    assert "another process is writing to" in outcome.findings[0]["item"]
    assert str(store_dir) in outcome.findings[0]["item"]
    # Once the first writer is gone (killed: flock dies with it), writing works again.
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("model_experiment", [DONE])
        assert run_partition(archive, instance, DONE).status == "OK"
