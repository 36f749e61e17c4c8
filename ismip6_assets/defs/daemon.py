"""``ismip6-daemon``: Dagster's own daemon (``dagster-daemon run``, same arguments), with its
backfill loop polling every `BACKFILL_POLL_SECONDS`. The daemon operators run, and the one
`ismip6 run` starts when none serves the instance.

Dagster's backfill daemon sleeps a fixed 30 s between iterations (`DEFAULT_DAEMON_INTERVAL_SECONDS`,
read by `dagster._daemon.backfill.execute_backfill_iteration_loop` when the loop starts; not
configurable in dagster.yaml in 1.13). A backfill takes three iterations to finish (launch the runs,
launch the catalog's run after the commits, see it done), so every backfill (the sensor's, the UI's,
`ismip6 run`'s) waited up to 90 s on sleeps alone. An iteration with no backfill in progress is one
query of the run storage, so polling every second costs the daemon little.

An iteration with a backfill in progress is not cheap (it reads every asset's latest events and the
backfill's runs: ~0.15 s), and a second of them while a run's step works for minutes is most of the
daemon's CPU, taken from the runs on the same machine. So an iteration runs only when something it
acts on may have changed since the last one (`_progress_mark`: a new event in the instance's event
log, which every materialization, check result and run status change writes, or a backfill
requested, canceled or changed), and at least every `FULL_ITERATION_SECONDS` whatever the mark says.

``--end-with-parent`` (given by `ismip6 run`, which starts the daemon in a session of its own):
stop the daemon and everything it started once the command that started it is gone.
"""

import os
import signal
import sys
import threading
import time


BACKFILL_POLL_SECONDS = 1
FULL_ITERATION_SECONDS = 30  # Dagster's own interval: never less often than Dagster alone
END_WITH_PARENT = "--end-with-parent"


def _progress_mark(instance) -> tuple | None:
    """What a backfill iteration acts on, in two cheap queries: the event log's last record id and
    each unfinished backfill's state (None: this storage cannot say, so every iteration runs)."""
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
    from dagster._serdes import serialize_value

    last_event = instance.event_log_storage.get_maximum_record_id()
    if last_event is None:
        return None
    statuses = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING]
    backfills = instance.get_backfills(filters=BulkActionsFilter(statuses=statuses))
    return last_event, tuple(sorted(serialize_value(b) for b in backfills))


def iterate_on_progress(iteration, clock=time.monotonic):
    """Dagster's backfill iteration (`dagster._daemon.backfill.execute_backfill_iteration`), run only
    when `_progress_mark` changed or `FULL_ITERATION_SECONDS` passed; otherwise nothing to do."""
    last: dict = {"mark": None, "at": None}

    def execute_backfill_iteration(workspace_process_context, logger, *args, **kwargs):
        mark = _progress_mark(workspace_process_context.instance)
        now = clock()
        if mark is not None and mark == last["mark"] and now - last["at"] < FULL_ITERATION_SECONDS:
            yield None
            return
        last.update(mark=mark, at=now)
        yield from iteration(workspace_process_context, logger, *args, **kwargs)

    return execute_backfill_iteration


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
    import dagster._daemon.backfill as backfill_daemon
    import dagster._daemon.controller as controller

    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = BACKFILL_POLL_SECONDS
    backfill_daemon.execute_backfill_iteration = iterate_on_progress(backfill_daemon.execute_backfill_iteration)
    if END_WITH_PARENT in sys.argv:
        sys.argv.remove(END_WITH_PARENT)
        threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True, name="ismip6-parent-watch").start()
    from dagster._daemon.cli import main as daemon_cli

    sys.argv[0] = "ismip6-daemon"
    _wait_for_socket(sys.argv)  # after the daemon's own imports, which overlap the server's start-up
    daemon_cli()


if __name__ == "__main__":
    main()
