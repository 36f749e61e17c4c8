"""Icechunk calls made from threads leave the GIL to the other threads while storage answers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import icechunk
import numpy as np
import pytest
import zarr

from ismip6_assets.core import nonblocking
from ismip6_assets.core.gcs import emulator_service_account_key
from tests.support.gcs_fixtures import STORE_BUCKET, gcs, gcs_emulator  # noqa: F401 - fixtures

pytestmark = pytest.mark.gcs
RELEASE_AFTER_SECONDS = 3.0


def _seconds_other_threads_wait(gcs, call) -> float:
    """How long the main thread waits for the GIL while `call` runs in a thread against a held storage.

    The held requests are released by another process after RELEASE_AFTER_SECONDS: a call that
    keeps the GIL through its round trip would starve this process's own threads of the release.
    """
    release = f"import time, urllib.request; time.sleep({RELEASE_AFTER_SECONDS}); urllib.request.urlopen(urllib.request.Request('{gcs.url}/_proxy/hold', method='DELETE'))"
    gcs.hold()
    releaser = subprocess.Popen([sys.executable, "-c", release])
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    try:
        start = time.monotonic()
        worker.start()
        time.sleep(0.3)  # the call waits on its held request; waking from this sleep needs the GIL
        waited = time.monotonic() - start - 0.3
    finally:
        releaser.wait(30)
        gcs.release()
    worker.join(30)
    assert outcome, "the call did not return after its requests were released"
    return waited


@pytest.fixture
def gcs_repo(gcs):
    storage = icechunk.gcs_storage(bucket=STORE_BUCKET, prefix=f"nonblocking-{uuid.uuid4().hex[:8]}", service_account_key=emulator_service_account_key(gcs.url))
    repo = icechunk.Repository.create(storage)
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="lithk", shape=(4, 3), chunks=(1, 3), dtype="f4")[:] = np.ones((4, 3), "f4")
    session.commit("one array")
    # Opened again: nothing of the branch or its manifests is cached in the process.
    return lambda: icechunk.Repository.open(storage)


def test_opening_a_session_lets_the_gil_go_as_icechunk_is(gcs, gcs_repo):
    repo = gcs_repo()
    assert _seconds_other_threads_wait(gcs, lambda: repo.readonly_session(branch="main")) < RELEASE_AFTER_SECONDS / 2


def test_a_chunk_type_is_read_without_keeping_the_gil(gcs, gcs_repo):
    session = gcs_repo().readonly_session(branch="main")
    waited = _seconds_other_threads_wait(gcs, lambda: nonblocking.chunk_type(session, "/lithk", (3, 0)))
    assert waited < RELEASE_AFTER_SECONDS / 2
    # Icechunk's own blocking form keeps it (earth-mover/icechunk#563): drop `nonblocking` when this fails.
    fresh = gcs_repo().readonly_session(branch="main")
    assert _seconds_other_threads_wait(gcs, lambda: fresh.chunk_type("/lithk", [3, 0])) > RELEASE_AFTER_SECONDS / 2
    assert nonblocking.chunk_type(session, "/lithk", (3, 0)) == icechunk.ChunkType.inline  # small: stored in the manifest
