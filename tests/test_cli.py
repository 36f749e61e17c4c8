import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ISMIP6 = str(Path(sys.executable).with_name("ismip6"))


def run(*args, env=None, cwd=None):
    return subprocess.run([ISMIP6, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_run_then_reconcile_report_every_partition(archive_dir, store_dir, tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path / "dh")}
    (tmp_path / "dh").mkdir()
    proc = run("run", "--source", str(archive_dir), "--store", str(store_dir), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"creating a new Icechunk store at file://{store_dir}" in proc.stdout
    # Quiet by default: the progress and the summary, no Dagster log lines, no colour codes when piped.
    output = proc.stdout + proc.stderr
    assert not re.search(r" - dagster[\w.]* - (DEBUG|INFO|WARNING|ERROR|CRITICAL) - ", output), output  # dagster, dagster.daemon.*
    assert "\x1b[" not in output and not re.search(r"\b(WARN|INFO|DEBUG) icechunk", output), output
    assert "7 partitions (7 run), 30 files, 29 groups written" in proc.stdout
    assert "[7/7]" in proc.stdout and "checks: 7 OK" in proc.stdout
    assert (tmp_path / "dh" / "history").exists()  # ran through the DAGSTER_HOME instance
    # One backfill, as the UI's "Materialize" and the sensor make: the 7 partitions in one run (the
    # backfill policy batches them), then the catalog's run after the commits; the daemon started
    # for the command ran them, through the instance's run queue and launcher.
    check = ("import dagster as dg; runs = dg.DagsterInstance.get().get_runs(); "
             "print(len(runs), len({r.tags.get('dagster/backfill') for r in runs}), sorted(r.status.value for r in runs), "
             "sorted(r.tags.get('dagster/asset_partition_range_start', '-') for r in runs))")
    jobs = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert jobs.stdout.strip() == "2 1 ['SUCCESS', 'SUCCESS'] ['-', 'AWI/PISM1/ctrl_proj_std']", jobs.stdout + jobs.stderr

    again = run("run", "--source", str(archive_dir), "--store", str(store_dir), env=env)
    assert again.returncode == 0 and again.stdout.count("store already current: no run") == 7 and "7 partitions (0 run)" in again.stdout
    assert "creating" not in again.stdout
    forced = run("run", "--all", "--source", str(archive_dir), "--store", str(store_dir), env=env)
    assert forced.returncode == 0 and "no run" not in forced.stdout and "0 groups written" in forced.stdout

    (archive_dir / "Projection-AIS/DOE/MALI/expA1/orog_AIS_DOE_MALI_expA1.nc").unlink()
    proc = run("reconcile", "--source", str(archive_dir), "--store", str(store_dir))
    assert proc.returncode == 1
    assert "DOE/MALI/expA1" in proc.stdout and "extra: orog" in proc.stdout


def test_sample_archive_command_writes_netcdf(tmp_path):
    proc = run("sample-archive", str(tmp_path / "a"), "--times", "2")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "a" / "Projection-AIS").rglob("*.nc"))) == 30


@pytest.mark.parametrize(
    "args, named",
    [
        (["--source", "s3://bucket/x"], "--source='s3://bucket/x'"),
        (["--store", "ftp://host/x"], "--store='ftp://host/x'"),
        (["--source", "gs://"], "--source='gs://'"),
    ],
)
def test_bad_settings_fail_before_any_work_naming_the_setting(args, named, tmp_path):
    proc = run("reconcile", "--source", str(tmp_path), "--store", str(tmp_path / "st"), *args)
    assert proc.returncode == 2
    assert named in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ["0", "lots", "-5"])
def test_a_bad_snapshot_cache_size_fails_before_any_work(value, archive_dir, tmp_path):
    proc = run("run", "--source", str(archive_dir), "--store", str(tmp_path / "st"), env={"ISMIP6_SNAPSHOT_CACHE_NODES": value})
    assert proc.returncode == 2
    assert f"ISMIP6_SNAPSHOT_CACHE_NODES={value!r}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "st").exists()


def _one_partition(archive_dir, keep="AWI/PISM1/exp05"):
    """The sample archive cut to one partition: a CLI run then takes seconds."""
    import shutil

    for folder in (archive_dir / "Projection-AIS").glob("*/*/*"):
        if folder.relative_to(archive_dir / "Projection-AIS").as_posix() != keep:
            shutil.rmtree(folder)
    return archive_dir / "Projection-AIS" / keep


def _tree(root):
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_run_names_each_failed_file_and_reconcile_writes_nothing(archive_dir, store_dir, tmp_path):
    folder = _one_partition(archive_dir)
    bad = folder / "orog_AIS_AWI_PISM1_exp05.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # truncated HDF5
    proc = run("run", "--source", str(archive_dir), "--store", str(store_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    failed = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("failed:")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: file://{bad} (") and len(failed[0]) > len(f"failed: file://{bad} ()"), proc.stdout
    again = run("run", "--source", str(archive_dir), "--store", str(store_dir))  # no run: the failure is still named
    assert "no run" in again.stdout and f"failed: file://{bad} (" in again.stdout, again.stdout

    # Read-only: no state file, no repository config, nothing else written; also from another
    # source path, which a writer would add to the repository's config as a new container.
    (store_dir / "index" / "store-state.json").unlink()
    moved = tmp_path / "moved-archive"
    archive_dir.rename(moved)
    before = _tree(store_dir)
    proc = run("reconcile", "--source", str(moved), "--store", str(store_dir))
    assert proc.returncode == 1 and "stale" in proc.stdout, proc.stdout + proc.stderr  # the urls moved with the folder
    assert _tree(store_dir) == before


def _closed_port() -> int:
    """A loopback port nothing listens on: a connection there is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["reconcile", "run"])
@pytest.mark.parametrize("host, cause", [("closed-port", "connection refused"), ("no-such-host.invalid:4443", "name not resolved")])
def test_an_unreachable_gcs_endpoint_is_one_line_within_seconds(command, host, cause, tmp_path):
    """Not the clients' minute of retries, their tracebacks, and then "no Projection-AIS/ folder there"."""
    host = f"127.0.0.1:{_closed_port()}" if host == "closed-port" else host
    env = {"STORAGE_EMULATOR_HOST": f"http://{host}", "DAGSTER_HOME": str(tmp_path)}
    start = time.monotonic()
    try:
        proc = subprocess.run([ISMIP6, command, "--source", "gs://ismip6/archive", "--store", "gs://bucket/store"], capture_output=True,
                              text=True, env={**os.environ, **env}, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ismip6 {command} against an unreachable {host} still running after 30 s")
    seconds = time.monotonic() - start
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and seconds < 15, (proc.returncode, seconds, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert host in lines[0] and cause in lines[0] and "Projection-AIS" not in lines[0], lines[0]
    assert not (tmp_path / "history").exists()  # nothing started
