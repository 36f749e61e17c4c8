"""`run_archive` in parallel worker processes, one of which is killed (SIGKILL) mid-partition.

Usage: python -m tests.support.worker_kill_driver SOURCE STORE DAGSTER_HOME MARKER

Worker processes are spawned, and a spawned child imports its parent's main module: this one. So
the hook below is installed in every worker: the first worker to have written a partition's groups
into its (uncommitted) session writes the partition's group to MARKER and kills itself, as a
native crash would. The pipeline code runs unmodified; only `store.write_groups` is wrapped.
Prints one JSON line per outcome.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import ismip6_assets.store as store_module

MARKER_ENV = "ISMIP6_TEST_KILL_MARKER"  # the test's own variable, read only by this driver
_original_write = store_module.write_groups


def write_then_die_once(store, items):
    _original_write(store, items)
    marker = Path(os.environ[MARKER_ENV])
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # exactly one worker wins
    except FileExistsError:
        return
    os.write(fd, items[0][1].rsplit("/", 1)[0].encode())  # INST_MODEL/EXP of the killed partition
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__mp_main__":  # how a spawned worker imports its parent's main module
    store_module.write_groups = write_then_die_once


def main(source: str, store: str, home: str) -> None:
    import dagster as dg

    from ismip6_assets.resources import ArchiveResource
    from ismip6_assets.runner import run_archive

    instance = dg.DagsterInstance.from_config(home)
    for outcome in run_archive(ArchiveResource(source_url=source, store_url=store), instance, workers=2):
        print(json.dumps({"partition": outcome.partition, "status": outcome.status, "written": outcome.written, "findings": outcome.findings}))


if __name__ == "__main__":
    os.environ[MARKER_ENV] = sys.argv[4]  # inherited by the spawned workers
    main(*sys.argv[1:4])
