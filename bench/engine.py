"""The one engine, timed as users run it, on an archive of the real archive's shape, in one run.

    .venv/bin/python bench/engine.py --scale 0.1     # 44 partitions, 86 steps a file

Each path builds the same archive into a fresh store, timed from exec to exit (imports, the Dagster
instance, the daemon and every run's start-up included):

- ``baseline``: the bare-library sequential loop (`throughput.phase_baseline`: virtualize, write
  each file's group with ``to_icechunk``, one commit per partition; one process, no Dagster).
- ``ismip6 run``: the command, with a persistent DAGSTER_HOME (the one-machine instance); it starts
  a daemon, launches one backfill, waits for it.
- ``sensor``: an operator's deployment: `archive_sensor` turned on, then the daemon the README's
  Deploying section runs (``ismip6-daemon run``: Dagster's daemon, its backfill loop every second)
  started on the empty store; timed until the backfill it requested has finished, the catalog and
  sea level included.
- ``refresh``: one file rewritten, then ``ismip6 run`` again.

Prints files/s of each and the ratios the issue's targets name, and writes
``bench/results/engine-scale{S}.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]

import shape  # noqa: E402
import throughput  # noqa: E402

BIN = Path(sys.executable).parent
INSTANCE_YAML = REPO / "ismip6_assets" / "defs" / "dagster.yaml"


def fresh_home(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    return path


def ismip6_run(archive: Path, store: Path, home: Path) -> dict:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / "ismip6"), "run", "--source", str(archive), "--store", str(store)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = [line for line in proc.stdout.splitlines() if " partitions (" in line][0]
    return {"seconds": round(seconds, 2), "summary": summary, "files": int(summary.split(", ")[1].split()[0])}


def sensor_path(archive: Path, store: Path, home: Path) -> dict:
    import warnings

    import dagster as dg

    warnings.simplefilter("ignore")
    env = {**os.environ, "DAGSTER_HOME": str(home), "ISMIP6_SOURCE_URL": str(archive), "ISMIP6_STORE_URL": str(store)}
    target = ["-m", "ismip6_assets.definitions"]
    subprocess.run([str(BIN / "dagster"), "sensor", "start", "archive_sensor", *target], env=env, check=True, capture_output=True)
    start = time.perf_counter()
    daemon = subprocess.Popen([str(BIN / "ismip6-daemon"), "run", *target], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        # Polled from this process (its instance opened once): a probe process a second, each paying
        # Dagster's imports, took a core's worth of the 2 the measured path runs on.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while True:
                backfills = instance.get_backfills()
                status = backfills[0].status.value if backfills else "NONE"
                if status.startswith("COMPLETED") or status == "FAILED":
                    break
                time.sleep(1)
        seconds = time.perf_counter() - start
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    assert status == "COMPLETED_SUCCESS", status
    return {"seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--workdir", type=Path, default=REPO / "data" / "bench")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    archive = workdir / f"archive-scale{args.scale:g}"
    archive_shape = shape.write_archive(archive, args.scale)
    files = archive_shape["files"]
    print(f"archive {archive}: {archive_shape['partitions']} partitions, {files} files", flush=True)
    result = {"command": f"bench/engine.py --scale {args.scale:g}", "archive": archive_shape, "cpus": os.cpu_count(),
              "load_before": [round(x, 2) for x in os.getloadavg()]}

    stores = {name: workdir / f"engine-store-{name}" for name in ("baseline", "run", "sensor")}
    for store in stores.values():
        shutil.rmtree(store, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / "throughput.py"), "--phase", "baseline", str(archive), str(stores["baseline"])], check=True,
                   capture_output=True)
    result["baseline"] = {"seconds": round(time.perf_counter() - start, 2), "files": files}
    result["ismip6_run"] = ismip6_run(archive, stores["run"], fresh_home(workdir / "engine-home-run"))
    result["sensor"] = sensor_path(archive, stores["sensor"], fresh_home(workdir / "engine-home-sensor"))
    result["sensor"]["files"] = files
    touched = shape.touch_one(archive)
    try:
        result["refresh"] = ismip6_run(archive, stores["run"], workdir / "engine-home-run")
    finally:
        shape.restore_one(touched)
    for name in ("baseline", "ismip6_run", "sensor"):
        r = result[name]
        r["files_per_s"] = round(files / r["seconds"], 2)
        print(f"{name:<10} {files} files in {r['seconds']:.1f} s = {r['files_per_s']} files/s (exec to exit)", flush=True)
    result["run_vs_baseline"] = round(result["ismip6_run"]["files_per_s"] / result["baseline"]["files_per_s"], 2)
    result["sensor_vs_run"] = round(result["sensor"]["files_per_s"] / result["ismip6_run"]["files_per_s"], 2)
    print(f"ratio      ismip6 run / baseline = {result['run_vs_baseline']}x; sensor path / ismip6 run = {result['sensor_vs_run']}x")
    print(f"refresh    one file rewritten, ismip6 run again: {result['refresh']['seconds']:.1f} s")
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out = HERE / "results" / f"engine-scale{args.scale:g}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} (load average before {result['load_before']}, after {result['load_after']})")


if __name__ == "__main__":
    main()
