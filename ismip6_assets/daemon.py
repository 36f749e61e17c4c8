"""The Dagster daemon `ismip6 run` starts when none serves the instance: Dagster's own
``dagster-daemon run``, with its backfill loop polling every `BACKFILL_POLL_SECONDS`.

Dagster's backfill daemon sleeps a fixed 30 s between iterations (`DEFAULT_DAEMON_INTERVAL_SECONDS`,
read by `dagster._daemon.backfill.execute_backfill_iteration_loop` when the loop starts; not
configurable in dagster.yaml in 1.13). A backfill takes three iterations to finish (launch the runs,
launch the catalog's run after the commits, see it done), so a command waited up to 90 s on sleeps
alone. An operator's long-running daemon keeps Dagster's default; this one lives for one command.
"""

import dagster._daemon.controller as controller

BACKFILL_POLL_SECONDS = 1


def main() -> None:
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = BACKFILL_POLL_SECONDS
    from dagster._daemon.cli import main as daemon_cli

    daemon_cli()


if __name__ == "__main__":
    main()
