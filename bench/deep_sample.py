"""What the reconciliation check's default deep sample costs per partition, on local disk and on gs://.

    .venv/bin/python bench/deep_sample.py --files 23 --grid 381 --latency-ms 20

Writes one partition of ``--files`` NetCDF4 files (zlib, one chunk a time step, ``--grid`` points a
side: 381 is the 16 km grid, 761 the 8 km one), commits it with the library pipeline, then times
`verify.verify_partition` with the default `SamplePolicy` (the check's default) on local disk and on
fake-gcs-server behind the tests' proxy with ``--latency-ms`` added to every request, which also
counts the requests. Prints seconds, chunks, bytes and requests of each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from tests.gcs_emulator import GCSEmulator, binary_path  # noqa: E402

KEY = "AWI/PISM1/exp05"
VARIABLES = (
    "lithk orog topg base sftgif sftgrf sftflf xvelsurf yvelsurf zvelsurf xvelbase yvelbase zvelbase xvelmean yvelmean "
    "litemptop litempbotgr litempbotfl strbasemag acabf libmassbfgr libmassbffl dlithkdt licalvf lifmassbf ligroundf"
).split()


def write_partition(root: Path, files: int, grid: int, steps: int) -> None:
    from ismip6_assets.core.sample_archive import sample_dataset, write_netcdf

    folder = root / "Projection-AIS" / KEY
    folder.mkdir(parents=True)
    for variable in VARIABLES[:files]:
        write_netcdf(sample_dataset(variable, variable, steps, grid), folder / f"{variable}_AIS_AWI_PISM1_exp05.nc", "chunked")


def commit(source_url: str, store_url: str) -> None:
    from ismip6_assets.core.index import list_archive
    from ismip6_assets.settings import load_settings
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.core.store import commit_partition, open_repository
    from ismip6_assets.core.virtualize import virtualize_rows

    settings = load_settings(source_url, store_url)  # the locations as `ismip6` builds them (STORAGE_EMULATOR_HOST too)
    source, store = settings.source, settings.store
    rows = list_archive(source, PartitionKey.parse(KEY)).rows
    result = virtualize_rows(rows.to_dict("records"), source)
    assert not result.failures, result.failures
    commit_partition(open_repository(store, source), PartitionKey.parse(KEY), result.files, [], [])


def measure(source_url: str, store_url: str) -> dict:
    from ismip6_assets.core.index import list_archive
    from ismip6_assets.settings import load_settings
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.core.reconcile import store_diff
    from ismip6_assets.core.store import open_repository
    from ismip6_assets.core.store_state import read_partition_state
    from ismip6_assets.core.verify import verify_partition

    settings = load_settings(source_url, store_url)  # the locations as `ismip6` builds them (STORAGE_EMULATOR_HOST too)
    source, store = settings.source, settings.store
    repo = open_repository(store, source)
    partition = PartitionKey.parse(KEY)
    state = read_partition_state(repo, partition)
    diff = store_diff(partition, list_archive(source, partition).rows, state)
    t = time.perf_counter()
    verified = verify_partition(repo, source, state, diff.ok)
    seconds = time.perf_counter() - t
    assert not verified.findings, verified.findings
    return {"seconds": round(seconds, 2), "chunks": verified.chunks, "bytes": verified.bytes_read, "arrays": verified.candidates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=23)
    parser.add_argument("--grid", type=int, default=381)
    parser.add_argument("--steps", type=int, default=10, help="time steps a file (the sample reads one chunk a variable)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deep-sample-"))
    write_partition(work / "archive", args.files, args.grid, args.steps)
    commit(str(work / "archive"), str(work / "store"))
    local = measure(str(work / "archive"), str(work / "store"))
    print(f"local  {local}", flush=True)

    emulator = GCSEmulator(binary_path(), work / "gcs-emulator.log").start()
    try:
        for bucket in ("ismip6", "ismip6-icechunk"):
            emulator.create_bucket(bucket)
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
        from ismip6_assets.core.gcs import GcsAccess, gcs_filesystem

        gcs_filesystem(GcsAccess(emulator.url)).put(str(work / "archive" / "Projection-AIS"), "ismip6/Projection-AIS", recursive=True)
        store = f"gs://ismip6-icechunk/deep-{uuid.uuid4().hex[:8]}"
        commit("gs://ismip6", store)
        emulator.set_delay(args.latency_ms)
        emulator.counts(clear=True)
        remote = measure("gs://ismip6", store)
        remote["requests"] = emulator.counts()
        print(f"gs://  at {args.latency_ms:g} ms a request: {remote}", flush=True)
    finally:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        emulator.stop()
    print(f"partition: {args.files} files, {args.grid}x{args.grid} grid, {args.steps} steps; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
