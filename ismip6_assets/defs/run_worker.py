"""Warm run workers (run_launcher.py): the fork server they are forked from, and what each runs, the
body of ``dagster api execute_run``. Imports nothing heavy itself: the daemon starts the fork server
first thing, before its own imports."""

from __future__ import annotations

import multiprocessing
import os
import threading

# What the fork server imports once, so a run worker forked from it starts with them imported: the
# costly imports of the run, but nothing that starts a Rust runtime. Icechunk's and obstore's Tokio
# threads do not survive a fork (a forked run hung in `Repository.open`); they are imported, quickly,
# in each worker (tests/test_run_launcher.py holds PRELOAD to that).
PRELOAD = [
    "dagster", "pandas", "pyarrow.parquet", "xarray", "dask.array", "zarr", "h5py", "virtualizarr", "gcsfs",
    "dagster_gcp", "pyproj", "PIL.Image", "ismip6_assets.defs.run_worker",
    # What a run worker imported after the fork (its instance's SQLite storage, Dagster's run API and
    # executor, the catalog's and previews' libraries), on each run's critical path otherwise.
    "dagster._cli.api", "dagster._core.execution.api", "dagster._core.executor.in_process", "dagster._core.instance.factory",
    "dagster._core.storage.sqlite_storage", "alembic", "pystac", "netCDF4", "PIL.PngImagePlugin", "PIL.ImageDraw",
]
FORK_LOCK = threading.Lock()


def _short_temp_dir() -> None:
    """Put this process's `multiprocessing` temp folder under /tmp (Dagster's convention for its
    sockets too), not TMPDIR: the fork server binds a Unix socket there, and a path past 107 bytes
    (a deep TMPDIR, as a test's machine has) failed with "AF_UNIX path too long", the daemon with it."""
    import tempfile
    from multiprocessing import util

    from dagster_shared.seven.temp_dir import get_system_temp_directory

    saved, tempfile.tempdir = tempfile.tempdir, get_system_temp_directory()
    try:
        util.get_temp_dir()  # created once a process, then reused
    finally:
        tempfile.tempdir = saved


def fork_context():
    """The `multiprocessing` context of warm run workers: forked from this process's fork server."""
    _short_temp_dir()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def start_fork_server() -> None:
    """Start this process's fork server now (it imports `PRELOAD` in the background), so the first
    run it launches does not wait for those imports."""
    from multiprocessing import forkserver

    with FORK_LOCK:
        fork_context()
        forkserver.ensure_running()


def warm_workers_configured(dagster_home: str | None) -> bool:
    """Whether the instance at `dagster_home` launches runs with this launcher's warm workers."""
    import yaml

    try:
        with open(os.path.join(dagster_home or "", "dagster.yaml")) as f:
            launcher = (yaml.safe_load(f) or {}).get("run_launcher") or {}
    except OSError:
        return False
    return launcher.get("module") == "ismip6_assets.defs.run_launcher" and (launcher.get("config") or {}).get("warm_run_workers", True) is not False


def execute_run(run_id: str, serialized_instance_ref: str) -> None:
    """Execute run `run_id` of the instance `serialized_instance_ref` names, as Dagster's run worker does:
    the run's own code (its job origin), its events in the instance's event log, an interrupt
    (termination) ending it as Dagster's do."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import DagsterInstance, InstanceRef
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts, setup_interrupt_handlers

    from ismip6_assets.core.executors import fork_default_pool, shutdown_shared

    # Before anything starts a thread: forked from here, the virtualization workers start with the
    # fork server's imports instead of importing them again (executors.fork_default_pool).
    fork_default_pool()
    setup_interrupt_handlers()
    try:
        with capture_interrupts(), DagsterInstance.from_ref(deserialize_value(serialized_instance_ref, InstanceRef)) as instance:
            _execute_run_command_body(run_id, instance, lambda event: None, set_exit_code_on_failure=False)
    finally:
        # A multiprocessing child runs no atexit handlers, and on exit it waits for its own
        # children: without this, the run's virtualization pool (executors.shared_executor) kept
        # the finished worker alive for good.
        shutdown_shared()
