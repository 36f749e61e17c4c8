"""Icechunk calls made from threads, through their async forms where the blocking form keeps the GIL.

``Session.chunk_type`` keeps the GIL while it fetches the array's manifest (earth-mover/icechunk#563,
open): on gs:// every other thread of the process waits a round trip per call, and when Icechunk's
runtime threads in turn wait for the GIL to hand results to those threads, nothing moves at all.
The reconciliation check hung for good that way, reading partitions side by side. The async form,
driven on zarr's event loop, waits without the GIL. (``Repository.readonly_session`` and the
store's reads let the GIL go: tests/test_nonblocking.py measures each.)
"""

from __future__ import annotations

from collections.abc import Sequence

import icechunk
from zarr.core.sync import sync


def chunk_type(session: icechunk.Session, array_path: str, coords: Sequence[int]) -> icechunk.ChunkType:
    """``session.chunk_type(...)`` without keeping the GIL through the manifest fetch."""
    return sync(session.chunk_type_async(array_path, list(coords)))
