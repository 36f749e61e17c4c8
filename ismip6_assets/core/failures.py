"""The failure log: ``{STORE}/failures/virtualization_failures_YYYYMMDD_HHMMSS.json``.

The authoritative record of current failures lives in the store itself (experiment-group attrs,
committed atomically with the groups); these JSON files are the human-readable log of each commit.
"""

from __future__ import annotations

import datetime as dt
import json

from ismip6_assets.core.locations import Location
from ismip6_assets.core.redact import redact
from ismip6_assets.core.virtualize import FailureRecord


def write_failures(store: Location, failures: list[FailureRecord], now: dt.datetime | None = None) -> str | None:
    """Write the records as a JSON list; return the URL, or None when there are none."""
    if not failures:
        return None
    now = now or dt.datetime.now(dt.UTC)
    folder = store.join("failures")
    store.fs.makedirs(folder.fs_path, exist_ok=True)
    body = redact(json.dumps([f.to_dict() for f in failures], indent=2))
    stem = f"virtualization_failures_{now:%Y%m%d_%H%M%S}"
    for n in range(1, 1000):  # several partitions may commit within one second
        target = folder.join(f"{stem}.json" if n == 1 else f"{stem}_{n}.json")
        try:
            store.put_exclusive(target, body.encode())
            return target.url
        except (FileExistsError, ValueError, NotImplementedError):
            if store.fs.exists(target.fs_path):
                continue
            with store.fs.open(target.fs_path, "wb") as f:  # filesystems without exclusive create
                f.write(body.encode())
            return target.url
    raise RuntimeError(f"could not name a failure log under {folder.url}")
