"""Virtualizes a partition's files in this fresh process and reports the peak memory they cost.

Usage: python -m tests.support.hostile_peak SOURCE PARTITION WARM_UP_VARIABLE

Imports and one good file (WARM_UP_VARIABLE) come first, so the peak measured after them is the
hostile files' own: the process's high-water mark (ru_maxrss) before and after. Prints one JSON
line: {"grown_mb", "seconds", "results": {variable: error or ""}}.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.virtualize import FailureRecord, virtualize_file


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main(source_url: str, partition: str, warm_up: str) -> None:
    source = parse_location(source_url, "source")
    rows = list_archive(source, PartitionKey.parse(partition)).rows.to_dict("records")
    results = {}
    for row in [r for r in rows if r["variable"] == warm_up]:
        results[row["variable"]] = virtualize_file(row, source)
    before, start = peak_mb(), time.monotonic()
    for row in [r for r in rows if r["variable"] != warm_up]:
        results[row["variable"]] = virtualize_file(row, source)
    seconds, grown = time.monotonic() - start, peak_mb() - before
    errors = {v: r.error if isinstance(r, FailureRecord) else "" for v, r in results.items()}
    print(json.dumps({"grown_mb": grown, "seconds": seconds, "results": errors}))


if __name__ == "__main__":
    main(*sys.argv[1:])
