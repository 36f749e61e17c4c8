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

import dagster._daemon.controller as controller

BACKFILL_POLL_SECONDS = 1
END_WITH_PARENT = "--end-with-parent"


def _end_with_parent(parent: int) -> None:
    """Stop this daemon and what it started (its process group) once the command that started it
    is gone, however it ended (`ismip6 run` killed with -9 stops nothing itself)."""
    while os.getppid() == parent:
        time.sleep(1)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def main() -> None:
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = BACKFILL_POLL_SECONDS
    if END_WITH_PARENT in sys.argv:
        sys.argv.remove(END_WITH_PARENT)
        threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True, name="ismip6-parent-watch").start()
    from dagster._daemon.cli import main as daemon_cli

    sys.argv[0] = "ismip6-daemon"
    daemon_cli()


if __name__ == "__main__":
    main()
