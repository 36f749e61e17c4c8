"""The Dagster daemon and instance an `ismip6 run` uses, kept light: the command starts the code
server (`CodeServer`, before it even imports Dagster) and the daemon before it imports the pipeline
and plans, so their start-ups (their imports, loading the code location) overlap the command's
instead of following it.

The daemon, given a code server of the command's (``--grpc-socket``), does not start its own; a
daemon started with its code location as a module (``-m``) would start one only once its own imports
are done, and the first runs of a backfill wait for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ismip6_assets.settings import process_environment

if TYPE_CHECKING:
    import dagster as dg

CODE_LOCATION = "ismip6_assets.definitions"

# The instance `ismip6 run` uses when DAGSTER_HOME is unset: the one-machine configuration of
# dagster_home/dagster.yaml (tests/test_deploy.py keeps the two equal), in a temporary folder.
ONE_MACHINE_INSTANCE = Path(__file__).parents[1] / "defs" / "dagster.yaml"


class CodeServer:
    """A Dagster gRPC code server of this package, started at once (``--lazy-load-user-code``: it
    listens within a second and loads the code location on the first request, meanwhile), in a
    process group of its own that the daemon joins (`running_daemon`), so both stop together."""

    def __init__(self) -> None:
        from dagster_shared.seven.temp_dir import get_system_temp_directory  # light: not Dagster's own imports

        # /tmp, not TMPDIR, as Dagster's own code servers: a socket path past 107 bytes does not
        # bind (a deep TMPDIR), and the daemon then waited for a server that never listened.
        self.folder = tempfile.mkdtemp(prefix="ismip6-code-", dir=get_system_temp_directory())
        self.socket = os.path.join(self.folder, "grpc.sock")
        self.log = open(os.path.join(self.folder, "code-server.log"), "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "api", "grpc", "--socket", self.socket, "--lazy-load-user-code",
             "-m", CODE_LOCATION, "--log-level", "warning"],
            env=self.environment(), stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, process_group=0,
        )

    @staticmethod
    def environment() -> dict[str, str]:
        # Without DAGSTER_HOME: the server does not need the instance (runs carry a reference to
        # theirs), and a server opening a new instance's SQLite storage while the command creates it
        # left two schema heads that the daemon then refused to open.
        return {k: v for k, v in process_environment().items() if k != "DAGSTER_HOME"}

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def code_server() -> Iterator[CodeServer]:
    server = CodeServer()
    try:
        yield server
    finally:
        server.stop()


def daemon_running(instance: dg.DagsterInstance, within_seconds: float = 60.0) -> bool:
    """Whether a daemon serves this instance (its backfill daemon's heartbeat is recent)."""
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < within_seconds


@contextmanager
def running_daemon(instance: dg.DagsterInstance, log_path: str | None = None, server: CodeServer | None = None) -> Iterator[None]:
    """A Dagster daemon for this instance while the block runs: the one already running, else one
    started here (its own process, loading this code location from `server` when given, else from
    a code server of its own) and stopped after, with `server`."""
    if daemon_running(instance):
        if server is not None:
            server.stop()  # not needed: the running daemon has its own
        yield
        return
    from ismip6_assets.defs.daemon import END_WITH_PARENT  # imports Dagster's daemon: only when one is started

    env = {**process_environment(), "DAGSTER_HOME": instance.root_directory}
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    if server is not None and server.process.poll() is not None:
        server.stop()  # it ended: the daemon starts a code server of its own instead
        server = None
    location = ["--grpc-socket", server.socket] if server else ["-m", CODE_LOCATION]
    # Its own process group (the server's, when given): a Ctrl-C of the command reaches the command
    # only, which stops the daemon and its runs' fork server with the group.
    group = {"process_group": server.process.pid} if server else {"process_group": 0}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "ismip6_assets.defs.daemon", END_WITH_PARENT, "run", *location],
        env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, **group,
    )
    try:
        yield
    finally:
        # Every run it launched has finished: nothing is lost by stopping it (and the code server)
        # at once; its graceful shutdown waits out each daemon loop's sleep.
        os.killpg(server.process.pid if server else daemon.pid, signal.SIGKILL)  # the server's group holds the daemon
        daemon.wait()
        instance.wipe_daemon_heartbeats()  # so the next command does not take it for a running daemon
        if log is not subprocess.DEVNULL:
            log.close()


@contextmanager
def instance_for_command(dagster_home: str | None) -> Iterator[dg.DagsterInstance]:
    """The instance at `dagster_home`, else a temporary one-machine instance for this command."""
    import dagster as dg

    if dagster_home:
        with dg.DagsterInstance.get() as instance:
            yield instance
        return
    with tempfile.TemporaryDirectory(prefix="ismip6-dagster-") as home:
        Path(home, "dagster.yaml").write_text(ONE_MACHINE_INSTANCE.read_text())
        with dg.DagsterInstance.from_config(home) as instance:
            yield instance
