"""The Dagster daemon and instance an `ismip6 run` uses, kept light: the command starts the daemon
before it imports the pipeline and plans, so the daemon's own start-up (its imports, its code
server) overlaps the command's instead of following it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from ismip6_assets.settings import process_environment

# The instance `ismip6 run` uses when DAGSTER_HOME is unset: the one-machine configuration of
# dagster_home/dagster.yaml (tests/test_deploy.py keeps the two equal), in a temporary folder.
ONE_MACHINE_INSTANCE = Path(__file__).parents[1] / "defs" / "dagster.yaml"


def daemon_running(instance: dg.DagsterInstance, within_seconds: float = 60.0) -> bool:
    """Whether a daemon serves this instance (its backfill daemon's heartbeat is recent)."""
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < within_seconds


@contextmanager
def running_daemon(instance: dg.DagsterInstance, log_path: str | None = None) -> Iterator[None]:
    """A Dagster daemon for this instance while the block runs: the one already running, else one
    started here (its own process, loading this code location) and stopped after."""
    if daemon_running(instance):
        yield
        return
    from ismip6_assets.defs.daemon import END_WITH_PARENT  # imports Dagster's daemon: only when one is started

    env = {**process_environment(), "DAGSTER_HOME": instance.root_directory}
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        [sys.executable, "-m", "ismip6_assets.defs.daemon", END_WITH_PARENT, "run", "-m", "ismip6_assets.definitions"],
        env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        yield
    finally:
        # Every run it launched has finished: nothing is lost by stopping it (and its code server)
        # at once; its graceful shutdown waits out each daemon loop's sleep.
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
        instance.wipe_daemon_heartbeats()  # so the next command does not take it for a running daemon
        if log is not subprocess.DEVNULL:
            log.close()


@contextmanager
def instance_for_command(dagster_home: str | None) -> Iterator[dg.DagsterInstance]:
    """The instance at `dagster_home`, else a temporary one-machine instance for this command."""
    if dagster_home:
        with dg.DagsterInstance.get() as instance:
            yield instance
        return
    with tempfile.TemporaryDirectory(prefix="ismip6-dagster-") as home:
        Path(home, "dagster.yaml").write_text(ONE_MACHINE_INSTANCE.read_text())
        with dg.DagsterInstance.from_config(home) as instance:
            yield instance
