"""Throughput of the whole pipeline on an archive of the real archive's shape, in one run.

    .venv/bin/python bench/throughput.py --scale 0.05     # ~1 min: 27 partitions, 617 files
    .venv/bin/python bench/throughput.py                  # full shape: 439 partitions, 10,034 files

Measures, each phase in a fresh subprocess (so its peak RSS is its own):

- ``baseline``: the bare-library sequential loop: virtualize each file (`virtualize_file`, the same
  fixes as the pipeline), write its group (``vds.vz.to_icechunk``), one ``session.commit`` per
  partition; one process, no Dagster, no listing per partition, no check, no preview.
- ``pipeline``: `ismip6_assets.cli.runs.run_archive(in_process=True)`: the same job through Dagster, one
  partition's run after another in this process on an ephemeral instance (the library's cost
  without the run queue; `bench/engine.py` times `ismip6 run` and the sensor as users run them).
- ``refresh``: one file rewritten, then `run_archive` again on the same store.
- ``reconcile``: `runs.reconcile_archive` of the whole store.
- ``memory``: peak RSS of one pipeline run on archives of 3 partitions of N files, for several N.

Prints files/s of both, their ratio, refresh and reconcile as % of the full run, peak memory, and
writes ``bench/results/throughput-scale{S}.json``. Timings exclude interpreter start-up and imports.
CPU seconds (user+sys of the phase's processes) are reported too: other load on the machine slows
wall times of both paths, and shows up as load average in the result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import shape  # noqa: E402


def proc_stat(pid: int) -> tuple[int, float]:
    """(parent pid, utime + stime in seconds) of a running process, from Linux's /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Descendants:
    """CPU seconds and peak RSS of this process's descendants, read from /proc every 0.1 s.

    A process pool's workers (ISMIP6_EXECUTOR=processes) may be re-parented, so they are not
    this process's children and ``RUSAGE_CHILDREN`` never sees them; each process's cumulative
    utime+stime is kept as last seen (at most 0.1 s of a process's last moments is missed).
    """

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.rss_kb: dict[int, int] = {}
        self.own_cpu = 0.0  # the polling thread's, taken out of the phase's CPU
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _Descendants:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()
        self.own_cpu = time.thread_time()

    def _sample(self) -> None:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parents[int(entry)] = proc_stat(int(entry))
                except OSError:
                    continue
        mine, todo = set(), [os.getpid()]
        while todo:
            pid = todo.pop()
            kids = [p for p, (ppid, _) in parents.items() if ppid == pid and p not in mine]
            mine.update(kids)
            todo += kids
        for pid in mine:
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), parents[pid][1])
            try:
                hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
                self.rss_kb[pid] = max(self.rss_kb.get(pid, 0), int(hwm.split()[1]))
            except (OSError, StopIteration):
                pass


def _proxy_counts(clear: bool = False) -> dict[str, int] | None:
    """Storage requests by method counted by the emulator proxy (tests/gcs_emulator.py), when in use."""
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if not host:
        return None
    import urllib.request

    request = urllib.request.Request(f"{host.rstrip('/')}/_proxy/counts", method="DELETE" if clear else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["counts"]


def _measure(fn) -> dict:
    _proxy_counts(clear=True)
    cpu0 = _self_cpu()
    start = time.perf_counter()
    with _Descendants() as descendants:
        extra = fn() or {}
        seconds = time.perf_counter() - start
    counts = _proxy_counts()
    cpu = _self_cpu() - cpu0 - descendants.own_cpu + sum(descendants.cpu.values())
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(rss_self / 1024, 1),
            "peak_rss_worker_mb": round(max(descendants.rss_kb.values(), default=0) / 1024, 1)} | ({"requests": counts} if counts is not None else {}) | extra


def _self_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def phase_baseline(source: str, store: str) -> dict:
    from ismip6_assets.core.index import list_archive
    from ismip6_assets.core.locations import parse_location
    from ismip6_assets.core.store import open_repository
    from ismip6_assets.core.virtualize import VirtualizedFile, virtualize_file

    settings = _archive(source, store).settings
    src = settings.source
    repo = open_repository(settings.store, src)
    _warm_up(source)

    def loop() -> dict:
        n = failures = 0
        for key, group in list_archive(src).rows.groupby("partition_key"):
            session = repo.writable_session("main")
            for row in group.to_dict("records"):
                vf = virtualize_file(row, src)
                if isinstance(vf, VirtualizedFile):
                    vf.dataset.vz.to_icechunk(session.store, group=vf.group)
                else:
                    failures += 1
                n += 1
            session.commit(f"{key}: {len(group)} files")
        return {"files": n, "failures": failures}

    return _measure(loop)


def _archive(source: str, store: str):
    """The resource `ismip6 run --source --store` builds, this process's environment included
    (STORAGE_EMULATOR_HOST on the emulator)."""
    from ismip6_assets.defs.resources import archive_resource_for
    from ismip6_assets.settings import load_settings

    return archive_resource_for(load_settings(source, store))


def _pipeline(source: str, store: str, instance) -> dict:
    from ismip6_assets.defs.resources import ArchiveResource
    from ismip6_assets.cli.runs import run_archive

    archive = _archive(source, store)
    outcomes = run_archive(archive, instance, in_process=True)
    statuses = {s: sum(o.status == s for o in outcomes) for s in {o.status for o in outcomes}}
    return {"files": sum(o.files for o in outcomes), "partitions": len(outcomes), "runs": sum(o.ran for o in outcomes),
            "written": sum(o.written for o in outcomes), "statuses": statuses}


def _warm_up(source: str) -> None:
    """Imports, in both paths: one file virtualized outside the timing (h5py, scipy, ... load on first use)."""
    from ismip6_assets.core.index import list_archive
    from ismip6_assets.core.locations import parse_location
    from ismip6_assets.core.virtualize import virtualize_file

    src = parse_location(source, "source")
    virtualize_file(list_archive(src).rows.iloc[0].to_dict(), src)


def phase_pipeline(source: str, store: str) -> dict:
    """Imports (with one warm-up file, as the baseline's) and the (ephemeral) Dagster instance are set
    up outside the timing: a sensor or daemon has both already; `refresh_command` measures them too.
    The partition workers `run_archive` spawns pay their own imports inside the timing."""
    import dagster as dg

    import ismip6_assets.cli.runs  # noqa: F401

    _warm_up(source)
    instance = dg.DagsterInstance.ephemeral()
    return _measure(lambda: _pipeline(source, store, instance))


def phase_steps(source: str, store: str) -> dict:
    """The pipeline phase with a persistent (temporary) Dagster instance, as ``ismip6 run`` with
    DAGSTER_HOME: each partition's step durations come from its run's event log (Dagster's own
    step stats), as means over the runs, and each run's wall time as ``(whole run)``."""
    import tempfile

    import dagster as dg

    import ismip6_assets.cli.runs  # noqa: F401

    _warm_up(source)
    with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.local_temp(home) as instance:
        result = _measure(lambda: _pipeline(source, store, instance))
        steps: dict[str, list[float]] = {}
        for run in instance.get_runs():
            if run.job_name != "materialize_partition":
                continue
            stats = instance.get_run_step_stats(run.run_id)
            for stat in stats:
                if stat.start_time and stat.end_time:
                    steps.setdefault(stat.step_key, []).append(stat.end_time - stat.start_time)
            record = instance.get_run_record_by_id(run.run_id)
            if record and record.start_time and record.end_time:
                steps.setdefault("(whole run)", []).append(record.end_time - record.start_time)
    result["step_seconds"] = {k: {"runs": len(v), "mean": round(sum(v) / len(v), 3), "total": round(sum(v), 2)} for k, v in steps.items()}
    return result


def phase_rerun_one(source: str, store: str) -> dict:
    """Peak memory of one partition's run against the whole store: its groups are removed, then
    the partition runs again (every file virtualized and written), in this fresh process."""
    import dagster as dg

    from ismip6_assets.core.locations import parse_location
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.defs.resources import ArchiveResource
    from ismip6_assets.cli.runs import register_partitions, run_partition
    from ismip6_assets.core.store import commit_partition, open_repository

    archive = ArchiveResource(source_url=source, store_url=store)
    key = shape.first_partition(source)
    commit_partition(open_repository(parse_location(store, "store"), archive.source), PartitionKey.parse(key), [], [], [], remove_partition=True)
    instance = dg.DagsterInstance.ephemeral()
    register_partitions(instance, [key])

    def rerun() -> dict:
        outcome = run_partition(archive, instance, key)
        assert outcome.status == "OK" and outcome.written == outcome.files, outcome
        return {"partition": key, "files": outcome.files}

    return _measure(rerun)


def phase_reconcile(source: str, store: str) -> dict:
    """`reconcile_archive` twice: ``cold`` without the saved store state (every group document read),
    then as usual, with the state file the pipeline's run left at the branch head. Reconcile is
    read-only, so the cold run writes none: the file is set aside for it and put back after."""
    from ismip6_assets.core.locations import parse_location
    from ismip6_assets.cli.runs import reconcile_archive
    from ismip6_assets.core.store_state import state_cache_path

    def reconcile() -> dict:
        diffs = reconcile_archive(_archive(source, store))
        return {"partitions": len(diffs), "statuses": {s: sum(d.status == s for d in diffs) for s in {d.status for d in diffs}}}

    state_file = Path(state_cache_path(parse_location(store, "store")).path)
    aside = state_file.with_suffix(".bench-aside")
    state_file.rename(aside)
    cold = _measure(reconcile)
    assert not state_file.exists(), "ismip6 reconcile wrote the state file: read-only commands write nothing"
    aside.rename(state_file)
    return _measure(reconcile) | {"cold_seconds": cold["seconds"]}


PHASES = {"baseline": phase_baseline, "pipeline": phase_pipeline, "refresh": phase_pipeline, "reconcile": phase_reconcile, "rerun_one": phase_rerun_one, "steps": phase_steps}


def run_phase(name: str, source: Path, store: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--phase", name, str(source), str(store)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def refresh_command(archive: Path, store: Path) -> dict:
    """Wall time of the whole ``ismip6 run`` command: interpreter start, imports, Dagster instance and all."""
    command = [str(Path(sys.executable).with_name("ismip6")), "run", "--source", str(archive), "--store", str(store)]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or "partitions (1 run)" not in proc.stdout:
        raise SystemExit(f"ismip6 run failed or ran other than one partition:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {"seconds": round(seconds, 3), "command": "ismip6 run"}


def memory_vs_partition_size(workdir: Path, sizes=(10, 40, 160)) -> list[dict]:
    """Peak RSS of a pipeline run on 3 partitions of `n` files each (one worker, in-process)."""
    out = []
    for n in sizes:
        archive = workdir / f"memory-{n}"
        shape.write_partitions(archive, partitions=3, files=n)
        store = workdir / f"memory-{n}-store"
        shutil.rmtree(store, ignore_errors=True)
        result = run_phase("pipeline", archive, store)
        out.append({"files_per_partition": n, "peak_rss_mb": result["peak_rss_mb"], "seconds": result["seconds"]})
    return out


def render_results(results_dir: Path = HERE / "results") -> str:
    """bench/RESULTS.md: one table over every throughput-scale*.json present."""
    runs = sorted((json.loads(p.read_text()) for p in results_dir.glob("throughput-scale*.json")), key=lambda r: r["archive"]["scale"])
    lines = [
        "# Throughput results",
        "",
        "Written by `bench/throughput.py --report` from `bench/results/throughput-scale*.json`; see README, Performance.",
        "files/s and seconds are wall time; CPU is user+sys of the phase's processes; load is the 1-min load average",
        "before/after on the 2-core machine. refresh: `run_archive` in a process with its imports and Dagster instance",
        "ready (as a sensor or daemon has them); refresh command: the whole `ismip6 run`, interpreter start included;",
        "reconcile: `ismip6 reconcile`'s work with the store-state file at the head; without it: every group document read.",
        "",
        "| scale | partitions | files | baseline files/s | pipeline files/s | **ratio** | CPU s baseline / pipeline | refresh (1 file) | refresh command | reconcile | reconcile, no state file | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        b, p, a = r["baseline"], r["pipeline"], r["archive"]
        command = r.get("refresh_command")
        lines.append(
            f"| {a['scale']:g} | {a['partitions']} | {a['files']} | {b['files_per_s']} | {p['files_per_s']} | **{r['ratio']}x** | "
            f"{b['cpu_seconds']:.0f} / {p['cpu_seconds']:.0f} | {r['refresh']['seconds']:.1f} s = {r['refresh']['percent_of_full_run']}% | "
            + (f"{command['seconds']:.1f} s = {command['percent_of_full_run']}% | " if command else "- | ")
            + f"{r['reconcile']['seconds']:.1f} s = {r['reconcile']['percent_of_full_run']}% | "
            + (f"{r['reconcile']['cold_seconds']:.1f} s = {r['reconcile']['cold_percent_of_full_run']}% | " if "cold_seconds" in r["reconcile"] else "- | ")
            + f"{r['load_before'][0]} / {r['load_after'][0]} |"
        )
    lines += ["", "Peak memory (RSS, MB) of the processes of the full runs and of one partition's run against the whole store:", "",
              "| scale | partitions in store | baseline (one process) | pipeline worker | one partition (23 files) re-run against the store |",
              "|---|---|---|---|---|"]
    for r in runs:
        rerun = r.get("rerun_one", {}).get("peak_rss_mb", "-")
        lines.append(f"| {r['archive']['scale']:g} | {r['archive']['partitions']} | {r['baseline']['peak_rss_mb']:.0f} | "
                     f"{r['pipeline']['peak_rss_worker_mb']:.0f} | {rerun} |")
    memory = [(r["archive"]["scale"], m) for r in runs for m in r.get("memory_vs_partition_size", [])]
    if memory:
        lines += ["", "Peak RSS of one pipeline run (in-process) on 3 partitions of N files:", "",
                  "| run at scale | files per partition | peak RSS |", "|---|---|---|"]
        lines += [f"| {scale:g} | {m['files_per_partition']} | {m['peak_rss_mb']:.0f} MB |" for scale, m in memory]
    return "\n".join(lines) + "\n" + gcs_section(HERE / "RESULTS.md")


GCS_HEADING = "## gs:// against local disk"


def gcs_section(results_md: Path) -> str:
    """The gs:// section bench/gcs.py keeps at the end of RESULTS.md, carried over as it is."""
    text = results_md.read_text() if results_md.exists() else ""
    return "\n" + text[text.index(GCS_HEADING):] if GCS_HEADING in text else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real experiments per model (default 1: full shape)")
    parser.add_argument("--workdir", type=Path, default=HERE.parent / "data" / "bench", help="archives and stores (git-ignored)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory-vs-partition-size runs")
    parser.add_argument("--report", action="store_true", help="only write bench/RESULTS.md from bench/results/*.json")
    parser.add_argument("--phase", nargs=3, metavar=("NAME", "SOURCE", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, source, store = args.phase
        print(json.dumps(PHASES[name](source, store)), flush=True)
        from ismip6_assets.core.executors import shutdown_shared

        shutdown_shared()
        os._exit(0)  # skip interpreter teardown of native extensions (see cli.entry)

    if args.report:
        (HERE / "RESULTS.md").write_text(render_results())
        print((HERE / "RESULTS.md").read_text())
        return
    workdir = args.workdir.resolve()
    archive = workdir / f"archive-scale{args.scale:g}"
    t = time.perf_counter()
    archive_shape = shape.write_archive(archive, args.scale)
    print(f"archive {archive}: {archive_shape['partitions']} partitions, {archive_shape['files']} files ({time.perf_counter() - t:.0f} s)", flush=True)
    result = {"command": f"bench/throughput.py --scale {args.scale:g}", "archive": archive_shape, "cpus": os.cpu_count(),
              "load_before": [round(x, 2) for x in os.getloadavg()],
              "env": {k: v for k, v in os.environ.items() if k in ("ISMIP6_EXECUTOR",)}}
    stores = {name: workdir / f"store-scale{args.scale:g}-{name}" for name in ("baseline", "pipeline")}
    for store in stores.values():
        shutil.rmtree(store, ignore_errors=True)
    for name in ("baseline", "pipeline"):
        result[name] = run_phase(name, archive, stores[name])
        r = result[name]
        r["files_per_s"] = round(r["files"] / r["seconds"], 1)
        print(f"{name:<9} {r['files']} files in {r['seconds']:.1f} s = {r['files_per_s']} files/s, cpu {r['cpu_seconds']} s, "
              f"peak RSS {r['peak_rss_mb']} MB (workers {r['peak_rss_worker_mb']} MB)", flush=True)
    # WARN is allowed: the full shape's archive holds a file at a path the default skip list names
    # (a real archive's file), so its entry is reported stale there, by design (skip_list.py).
    statuses = result["pipeline"]["statuses"]
    assert set(statuses) <= {"OK", "WARN"} and sum(statuses.values()) == archive_shape["partitions"], statuses
    result["ratio"] = round(result["pipeline"]["files_per_s"] / result["baseline"]["files_per_s"], 2)
    print(f"ratio     pipeline / baseline = {result['ratio']}x", flush=True)

    touched = shape.touch_one(archive)
    try:
        result["refresh"] = run_phase("refresh", archive, stores["pipeline"])
    finally:
        shape.restore_one(touched)
    result["refresh_command"] = refresh_command(archive, stores["pipeline"])  # refreshes the restored file
    result["reconcile"] = run_phase("reconcile", archive, stores["pipeline"])
    full = result["pipeline"]["seconds"]
    for name in ("refresh", "refresh_command", "reconcile"):
        result[name]["percent_of_full_run"] = round(100 * result[name]["seconds"] / full, 2)
        print(f"{name:<9} {result[name]['seconds']:.2f} s = {result[name]['percent_of_full_run']}% of the full run", flush=True)
    result["reconcile"]["cold_percent_of_full_run"] = round(100 * result["reconcile"]["cold_seconds"] / full, 2)
    print(f"reconcile without the saved store state: {result['reconcile']['cold_seconds']:.2f} s = "
          f"{result['reconcile']['cold_percent_of_full_run']}% of the full run", flush=True)
    result["rerun_one"] = run_phase("rerun_one", archive, stores["pipeline"])
    print(f"memory    one partition ({result['rerun_one']['files']} files) against the whole store of {archive_shape['partitions']} "
          f"partitions: peak RSS {result['rerun_one']['peak_rss_mb']} MB", flush=True)
    if not args.no_memory:
        result["memory_vs_partition_size"] = memory_vs_partition_size(workdir)
        print("memory    " + ", ".join(f"{m['files_per_partition']} files/partition: {m['peak_rss_mb']} MB" for m in result["memory_vs_partition_size"]))
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out = HERE / "results" / f"throughput-scale{args.scale:g}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "RESULTS.md").write_text(render_results())
    print(f"wrote {out} and bench/RESULTS.md (load average before {result['load_before']}, after {result['load_after']})")


if __name__ == "__main__":
    main()
