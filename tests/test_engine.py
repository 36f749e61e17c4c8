"""The one engine: `ismip6 run` and the sensor go through the instance's run queue, run launcher,
run monitoring and run retries (a real daemon, real run worker processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ismip6_assets.cli.daemon_process import ONE_MACHINE_INSTANCE

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PARTITIONS = 7


def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(ONE_MACHINE_INSTANCE.read_text())
    return home


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended first:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def started_worker(instance: dg.DagsterInstance) -> tuple[str, int] | None:
    """(run id, run worker pid) of a partitions run that has started."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        if "dagster/asset_partition_range_start" not in run.tags and "dagster/partition" not in run.tags:
            continue
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
        if records:
            return run.run_id, records[0].event_log_entry.dagster_event.pid
    return None


@pytest.mark.slow
def test_a_killed_run_is_marked_failed_by_dagster_and_its_retry_completes(archive_dir, store_dir, tmp_path):
    home = dagster_home(tmp_path)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ismip6_assets.cli", "run", "--source", str(archive_dir), "--store", str(store_dir)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run_id, pid = wait_for(lambda: started_worker(instance), 180, "a partitions run starting", proc)
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{parent}/cmdline") as f:
                assert "multiprocessing.forkserver" in f.read()  # a warm run worker (run_launcher.py), not a fresh interpreter
            os.kill(pid, signal.SIGKILL)  # the run worker dies mid-run: OOM, a native crash, kill -9
            out, _ = proc.communicate(timeout=400)
            assert proc.returncode == 0, out
            assert f"{SAMPLE_PARTITIONS} partitions ({SAMPLE_PARTITIONS} run)" in out and f"checks: {SAMPLE_PARTITIONS} OK" in out, out
            dead = instance.get_run_by_id(run_id)
            assert dead.status == dg.DagsterRunStatus.FAILURE  # run monitoring failed it: not left STARTED
            retries = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
            assert [r.status for r in retries] == [dg.DagsterRunStatus.SUCCESS]  # Dagster's run retry finished the work
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reconcile = subprocess.run([sys.executable, "-m", "ismip6_assets.cli", "reconcile", "--source", str(archive_dir), "--store", str(store_dir)],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr


@pytest.mark.slow
def test_the_sensor_alone_builds_the_sample_archive_through_the_daemon(archive_dir, store_dir, tmp_path):
    home = dagster_home(tmp_path)
    env = {**os.environ, "DAGSTER_HOME": str(home), "ISMIP6_SOURCE_URL": str(archive_dir), "ISMIP6_STORE_URL": str(store_dir)}
    target = ["-m", "ismip6_assets.definitions"]
    started = subprocess.run([sys.executable, "-m", "dagster", "sensor", "start", "archive_sensor", *target],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    daemon = subprocess.Popen([sys.executable, "-m", "ismip6_assets.defs.daemon", "run", *target], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            check = dg.AssetCheckKey(dg.AssetKey("icechunk_commit"), "reconciliation")

            def every_partition_checked():
                records = instance.event_log_storage.get_asset_check_execution_history(check, limit=100)
                passed = {r.partition for r in records if r.status.value == "SUCCEEDED"}
                return len(passed) == SAMPLE_PARTITIONS and passed

            def catalog_built():
                return instance.get_latest_materialization_event(dg.AssetKey("store_catalog")) is not None

            checked = wait_for(every_partition_checked, 300, "a reconciliation result for every partition")
            wait_for(catalog_built, 120, "the catalog after the commits")
            backfills = instance.get_backfills()
            assert len(backfills) == 1 and backfills[0].tags["ismip6/launched_by"] == "archive_sensor"  # one backfill, not a run each
            runs = instance.get_runs()
            assert all(r.tags.get("dagster/backfill") == backfills[0].backfill_id for r in runs)
            assert len(runs) == 2  # the 7 partitions in one run (backfill policy), then the catalog
            assert len(checked) == SAMPLE_PARTITIONS
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    reconcile = subprocess.run([sys.executable, "-m", "ismip6_assets.cli", "reconcile"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr


def test_the_backfill_iteration_runs_when_the_event_log_or_a_backfill_moved_or_ten_seconds_passed():
    from types import SimpleNamespace

    from dagster._core.execution.backfill import PartitionBackfill

    from ismip6_assets.defs.daemon import FULL_ITERATION_SECONDS, iterate_on_progress

    calls, now = [], [0.0]

    def iteration(context, logger):
        calls.append(now[0])
        yield None

    with dg.DagsterInstance.ephemeral() as instance:
        context = SimpleNamespace(instance=instance)
        gated = iterate_on_progress(iteration, clock=lambda: now[0])

        def tick(seconds: float = 1.0) -> int:
            now[0] += seconds
            list(gated(context, None))
            return len(calls)

        instance.report_runless_asset_event(dg.AssetMaterialization("first"))
        assert tick() == 1  # the first iteration always runs
        assert tick() == 1 and tick() == 1  # nothing moved: Dagster's iteration is not run
        instance.report_runless_asset_event(dg.AssetMaterialization("lithk"))
        assert tick() == 2  # a new event (a materialization, a check result, a run status change)
        assert tick() == 2
        @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a"]))
        def field() -> None: ...

        instance.add_backfill(PartitionBackfill.from_asset_partitions(
            backfill_id="b1", asset_graph=dg.Definitions(assets=[field]).resolve_asset_graph(), partition_names=["a"],
            asset_selection=[field.key], backfill_timestamp=0.0, tags={}, dynamic_partitions_store=instance,
            all_partitions=False, title=None, description=None, run_config=None,
        ))
        assert tick() == 3  # a backfill requested
        assert tick() == 3
        assert tick(FULL_ITERATION_SECONDS - 2) == 3
        assert tick(2) == 4  # and at least every FULL_ITERATION_SECONDS
