"""The Dagster daemon `ismip6 run` starts when none serves the instance: Dagster's own
``dagster-daemon run``, with its backfill loop polling every `BACKFILL_POLL_SECONDS`.

Dagster's backfill daemon sleeps a fixed 30 s between iterations (`DEFAULT_DAEMON_INTERVAL_SECONDS`,
read by `dagster._daemon.backfill.execute_backfill_iteration_loop` when the loop starts; not
configurable in dagster.yaml in 1.13). A backfill takes three iterations to finish (launch the runs,
launch the catalog's run after the commits, see it done), so a command waited up to 90 s on sleeps
alone. An operator's long-running daemon keeps Dagster's default; this one lives for one command.
"""

import os
import signal
import threading
import time

import dagster._daemon.controller as controller

BACKFILL_POLL_SECONDS = 1


def _end_with_parent(parent: int) -> None:
    """Stop this daemon and what it started (its process group) once the command that started it
    is gone, however it ended (`ismip6 run` killed with -9 stops nothing itself)."""
    while os.getppid() == parent:
        time.sleep(1)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def main() -> None:
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = BACKFILL_POLL_SECONDS
    if os.getpgid(0) == os.getpid():  # started in a session of its own by `daemon_process.running_daemon`
        threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True, name="ismip6-parent-watch").start()
    from dagster._daemon.cli import main as daemon_cli

    daemon_cli()


if __name__ == "__main__":
    main()
