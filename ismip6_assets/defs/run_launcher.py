"""The one-machine run launcher: Dagster's `DefaultRunLauncher`, with run workers that start warm
and a health check of them.

**Warm run workers.** Dagster's default launcher asks the code server to start each run, and the
server spawns a fresh interpreter for it (`multiprocessing` "spawn", hard-coded in
`dagster._grpc.server`): every run pays the imports of Dagster and of this package again, a few
seconds each (bench/HISTORY.md, "Measurements behind the code"), three times on the critical path of
an `ismip6 run` (the two first runs of partitions, the run of the catalog and sea level after them)
and twice in a one-file refresh. This launcher starts each run in a process forked from a Python
`multiprocessing` fork server that imported the run's libraries once (`run_worker.start_fork_server`,
which `ismip6-daemon` calls first thing), and runs there what ``dagster api execute_run`` runs.
The run is the same run: the run queue and its limits, run monitoring, run retries, the event log
and termination (SIGINT to the worker, as Dagster's own termination raises an interrupt in it) are
Dagster's. ``warm_run_workers: false`` in the instance's ``run_launcher.config`` gives back Dagster's
own path through the code server. A cluster names `K8sRunLauncher` or `DockerRunLauncher` instead
(README, Deploying).

**Health check.** Dagster's run retries launch a failed run again, once it is marked failed. A run
whose process dies (out of memory, a native crash in a hostile NetCDF file, `kill -9`) is marked
failed by run monitoring only with a launcher that says whether a run's worker is alive: Kubernetes'
and Docker's can, the default (a local process per run) cannot, and the run stayed STARTED forever.
This one answers from the run worker's process id, which its RUN_START event records, on this machine.
"""

from __future__ import annotations

import multiprocessing
import os
import signal

from dagster import DagsterEventType, DagsterRun, Field
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._serdes import serialize_value

from ismip6_assets.defs.run_worker import FORK_LOCK, execute_run, fork_context


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
    """`DefaultRunLauncher` with warm run workers and a health check of them (module docstring)."""

    def __init__(self, inst_data=None, warm_run_workers: bool = True) -> None:
        super().__init__(inst_data=inst_data)
        self.warm = warm_run_workers
        self._workers: dict[str, multiprocessing.process.BaseProcess] = {}

    @classmethod
    def config_type(cls):
        return {"warm_run_workers": Field(bool, is_required=False, default_value=True)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    def launch_run(self, context: LaunchRunContext) -> None:
        if not self.warm:
            super().launch_run(context)
            return
        run = context.dagster_run
        with FORK_LOCK:
            self._workers = {k: p for k, p in self._workers.items() if p.is_alive()}
            worker = fork_context().Process(target=execute_run, args=(run.run_id, serialize_value(self._instance.get_ref())), name=f"dagster-run-{run.run_id[:8]}")
            worker.start()
            self._workers[run.run_id] = worker
        self._run_ids.add(run.run_id)

    def terminate(self, run_id: str) -> bool:
        if not self.warm:
            return super().terminate(run_id)
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        pid = self._worker_pid(run)
        if pid is None or not process_alive(pid):
            return False
        self._instance.report_run_canceling(run)
        os.kill(pid, signal.SIGINT)  # the worker's `capture_interrupts` turns it into Dagster's interruption
        return True

    def _worker_pid(self, run: DagsterRun) -> int | None:
        records = self._instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START, limit=1).records
        return records[0].event_log_entry.dagster_event.pid if records else None

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = self._worker_pid(run)
        if pid is None and run.run_id not in self._run_ids:
            # not started yet: run monitoring's start timeout covers a launch that never starts
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run worker has not started yet")
        if pid is None:
            worker = self._workers.get(run.run_id)
            if worker is not None and not worker.is_alive():
                return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker exited with code {worker.exitcode} before the run started")
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run worker has not started yet")
        if process_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker process {pid} is gone (killed or crashed)")
