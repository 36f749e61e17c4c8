"""``ismip6-daemon``: Dagster's own daemon (``dagster-daemon run``, same arguments), with its
backfill loop polling every `BACKFILL_POLL_SECONDS`. The daemon operators run, and the one
`ismip6 run` starts when none serves the instance.

Dagster's backfill daemon sleeps a fixed 30 s between iterations (`DEFAULT_DAEMON_INTERVAL_SECONDS`,
read by `dagster._daemon.backfill.execute_backfill_iteration_loop` when the loop starts; not
configurable in dagster.yaml in 1.13). A backfill takes three iterations to finish (launch the runs,
launch the catalog's run after the commits, see it done), so every backfill (the sensor's, the UI's,
`ismip6 run`'s) waited up to 90 s on sleeps alone. An iteration with no backfill in progress is one
query of the run storage, so polling every second costs the daemon little.

``--end-with-parent`` (given by `ismip6 run`, which starts the daemon in a session of its own):
stop the daemon and everything it started once the command that started it is gone.
"""

import os
import signal
import sys
import threading
import time


BACKFILL_POLL_SECONDS = 1
END_WITH_PARENT = "--end-with-parent"


def _end_with_parent(parent: int) -> None:
    """Stop this daemon and what it started (its process group) once the command that started it
    is gone, however it ended (`ismip6 run` killed with -9 stops nothing itself)."""
    while os.getppid() == parent:
        time.sleep(1)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _wait_for_socket(argv: list[str], timeout: float = 120.0) -> None:
    """With ``--grpc-socket PATH`` (the code server `ismip6 run` started beside this daemon), wait
    until it listens: a daemon that cannot reach its code location when it starts marks the
    backfills it serves failed, and tries the location again only a minute later."""
    if "--grpc-socket" not in argv:
        return
    socket = argv[argv.index("--grpc-socket") + 1]
    deadline = time.monotonic() + timeout
    while not os.path.exists(socket) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    from ismip6_assets.defs.run_worker import start_fork_server, warm_workers_configured
    from ismip6_assets.settings import process_environment

    if warm_workers_configured(process_environment().get("DAGSTER_HOME")):
        start_fork_server()  # first: its imports overlap the daemon's own, not the first run's (run_launcher.py)
    import dagster._daemon.controller as controller

    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = BACKFILL_POLL_SECONDS
    if END_WITH_PARENT in sys.argv:
        sys.argv.remove(END_WITH_PARENT)
        threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True, name="ismip6-parent-watch").start()
    from dagster._daemon.cli import main as daemon_cli

    sys.argv[0] = "ismip6-daemon"
    _wait_for_socket(sys.argv)  # after the daemon's own imports, which overlap the server's start-up
    daemon_cli()


if __name__ == "__main__":
    main()
