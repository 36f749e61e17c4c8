"""Store size and object count before and after `maintenance.maintain_store` (retention 0), on a
bench/shape.py archive: ``.venv/bin/python bench/maintenance.py --scale 0.05 [--workdir DIR]``.

Counts the repository's own objects (snapshots, manifests, transaction logs, refs), not the
pipeline's sidecar folders (index/, failures/, dagster/).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import shape

from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.maintenance import maintain_store, reachable_snapshots
from ismip6_assets.core.store import open_repository

HERE = Path(__file__).resolve().parent

def du(path: Path) -> tuple[int, int]:
    """(objects, bytes) under `path`, the pipeline's sidecar folders left out."""
    n = b = 0
    for root, _, files in os.walk(path):
        if any(part in root for part in ("/index", "/failures", "/dagster")):
            continue
        for f in files:
            n += 1
            b += os.path.getsize(os.path.join(root, f))
    return n, b

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--scale", type=float, default=0.05)
parser.add_argument("--workdir", type=Path, default=HERE.parent / "data" / "bench")
args = parser.parse_args()
archive, store = args.workdir / f"archive-scale{args.scale:g}", args.workdir / f"store-scale{args.scale:g}-maintenance"
if not archive.exists():
    print(shape.write_archive(archive, args.scale))
shutil.rmtree(store, ignore_errors=True)
t = time.perf_counter()
proc = subprocess.run([sys.executable, "-m", "ismip6_assets.cli", "run", "--source", str(archive), "--store", str(store)], capture_output=True, text=True)
print(proc.stdout.splitlines()[-2:], f"{time.perf_counter()-t:.0f} s")
repo = open_repository(parse_location(str(store), "store"), parse_location(str(archive), "source"))
print("before: snapshots", len(reachable_snapshots(repo)), "objects, bytes", du(store), {d: du(store / d) for d in ("snapshots", "manifests", "transactions", "chunks") if (store / d).exists()})
t = time.perf_counter()
report = maintain_store(repo, timedelta(0))
print(f"maintenance {time.perf_counter()-t:.1f} s", report.metadata())
print("after: snapshots", len(reachable_snapshots(repo)), "objects, bytes", du(store), {d: du(store / d) for d in ("snapshots", "manifests", "transactions", "chunks") if (store / d).exists()})
