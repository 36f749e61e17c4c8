"""Bad configuration and hostile names: one clear error before any work, nothing written outside its group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ismip6_assets.index import list_archive
from ismip6_assets.locations import ConfigError, parse_location
from ismip6_assets.store import open_repository

ISMIP6 = str(Path(sys.executable).with_name("ismip6"))


def ismip6(*args, env=None):
    return subprocess.run([ISMIP6, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def assert_config_error(proc, *named):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "configuration error" in proc.stderr
    assert "Traceback" not in proc.stderr
    for text in named:
        assert text in proc.stderr


@pytest.mark.parametrize(
    "source, named",
    [
        ("s3://bucket/archive", ["ISMIP6_SOURCE_URL", "unknown scheme 's3'"]),
        ("gs://", ["ISMIP6_SOURCE_URL", "lacks a bucket"]),
        ("file://host/path", ["ISMIP6_SOURCE_URL", "file:///"]),
        ("   ", ["ISMIP6_SOURCE_URL", "empty"]),
    ],
)
def test_invalid_source_urls(source, named, tmp_path):
    assert_config_error(ismip6("run", "--source", source, "--store", str(tmp_path / "store")), *named)
    assert not (tmp_path / "store").exists()


def test_source_without_projection_folder(tmp_path):
    (tmp_path / "src" / "Projection-GIS").mkdir(parents=True)
    proc = ismip6("run", "--source", str(tmp_path / "src"), "--store", str(tmp_path / "store"))
    assert_config_error(proc, "ISMIP6_SOURCE_URL", "no Projection-AIS/ folder")
    assert not (tmp_path / "store").exists()


def test_store_pointing_at_a_folder_that_is_not_icechunk(archive_dir, tmp_path):
    store = tmp_path / "not-a-store"
    store.mkdir()
    (store / "thesis.tex").write_text("precious")
    proc = ismip6("run", "--source", str(archive_dir), "--store", str(store))
    assert_config_error(proc, "ISMIP6_STORE_URL", "not an Icechunk repository")
    assert sorted(p.name for p in store.iterdir()) == ["thesis.tex"]  # nothing written there


@pytest.mark.parametrize("content", [None, "{not json", json.dumps(["no", "type"])])
def test_unreadable_credentials_fail_before_any_request(content, tmp_path):
    creds = tmp_path / "sa.json"
    if content is not None:
        creds.write_text(content)
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(creds), "STORAGE_EMULATOR_HOST": ""}
    proc = ismip6("run", "--source", "gs://ismip6", "--store", "gs://ismip6-icechunk/store", env=env)
    assert_config_error(proc, "GOOGLE_APPLICATION_CREDENTIALS", str(creds))
    if content:
        assert content not in proc.stderr  # the file's content is never echoed


def test_open_repository_refuses_a_foreign_folder_in_process(archive_dir, tmp_path):
    store = tmp_path / "foreign"
    (store / "zarr.json").parent.mkdir()
    (store / "zarr.json").write_text("{}")
    with pytest.raises(ConfigError, match="not an Icechunk repository"):
        open_repository(parse_location(str(store), "store"), parse_location(str(archive_dir), "source"))


@pytest.mark.parametrize(
    "folder",
    ["..", "A\u0410WI", "AWI\x07", "AW I", "AWI__X", "-rf", "A" * 65],  # traversal, Cyrillic А, control, space, '__', option-like, too long
)
def test_hostile_folder_names_are_reported_not_indexed(archive_dir, folder):
    base = archive_dir / "Projection-AIS"
    target = (base / folder / "PISM1" / "exp05") if folder != ".." else (base / "AWI" / "PISM1" / "...")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:
        pytest.skip(f"filesystem refuses {folder!r}")
    (target / "lithk_AIS_X_PISM1_exp05.nc").write_bytes(b"CDF\x01")
    listing = list_archive(parse_location(str(archive_dir), "source"))
    hostile = [p for p, _ in listing.ignored if "lithk_AIS_X_PISM1_exp05.nc" in p]
    assert len(hostile) == 1, listing.ignored
    assert not listing.rows["url"].str.contains("lithk_AIS_X_PISM1").any()
    assert all(k.count("/") == 2 for k in listing.partitions)
