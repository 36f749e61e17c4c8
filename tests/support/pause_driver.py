"""Runs one partition through Dagster and parks the process at a chosen point, for kill -9 tests.

Usage: python -m tests.support.pause_driver SOURCE STORE PARTITION POINT MARKER

POINT is where the process announces itself (writes MARKER) and then sleeps until it is killed:
  virtualize  after the first file has been virtualized
  write       after the partition's groups have been written into the (uncommitted) session
  commit      right before the session's commit
The pipeline code runs unmodified; only these three calls are wrapped to signal and wait.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import dagster as dg
import icechunk

import ismip6_assets.core.store as store_module
import ismip6_assets.core.virtualize as virtualize
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.cli.runs import run_partition


def park(marker: Path) -> None:
    marker.write_text("parked")
    while True:
        time.sleep(1)


def main(source: str, store: str, partition: str, point: str, marker: str) -> None:
    marker_path = Path(marker)
    if point == "virtualize":
        original = virtualize.virtualize_file
        calls = []

        def virtualize_then_park(*args, **kwargs):
            result = original(*args, **kwargs)
            calls.append(result)
            if len(calls) == 1:
                park(marker_path)
            return result

        virtualize.virtualize_file = virtualize_then_park
    elif point == "write":
        original_write = store_module.write_groups

        def write_then_park(*args, **kwargs):
            original_write(*args, **kwargs)
            park(marker_path)

        store_module.write_groups = write_then_park
    elif point == "commit":

        def park_before_commit(self, *args, **kwargs):
            park(marker_path)

        icechunk.Session.commit = park_before_commit
    else:
        raise SystemExit(f"unknown point {point!r}")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("model_experiment", [partition])
        run_partition(ArchiveResource(source_url=source, store_url=store), instance, partition)
    raise SystemExit("the run finished without reaching the pause point")


if __name__ == "__main__":
    main(*sys.argv[1:])
