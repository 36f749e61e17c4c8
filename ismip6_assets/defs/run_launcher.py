"""The one-machine run launcher: Dagster's `DefaultRunLauncher`, plus a health check of its run workers.

Dagster's run retries launch a failed run again, once it is marked failed. A run whose process dies
(out of memory, a native crash in a hostile NetCDF file, `kill -9`) is marked failed by the code
server that started it, when that server sees the process end; when the server is gone too (killed
with it, a restart), only run monitoring can, and only with a launcher that says whether a run's
worker is alive: Kubernetes' and Docker's can, the default (a local process per run) cannot, and the
run stayed STARTED forever. This one answers from the run worker's process id, which its RUN_START
event records, on this machine. It is what `dagster_home/dagster.yaml` names; a cluster names
`K8sRunLauncher` or `DockerRunLauncher` instead (README, Deploying).
"""

from __future__ import annotations

import os

from dagster import DagsterEventType, DagsterRun
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


class LocalRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` whose run workers run monitoring can check (see the module docstring)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        records = self._instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START, limit=1).records
        if not records:  # not started yet: run monitoring's start timeout covers a launch that never starts
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run worker has not started yet")
        pid = records[0].event_log_entry.dagster_event.pid
        if pid is None or process_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker process {pid} is gone (killed or crashed)")
