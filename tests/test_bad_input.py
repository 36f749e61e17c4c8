"""Bad configuration and hostile names: one clear error before any work, nothing written outside its group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import ConfigError, parse_location
from ismip6_assets.core.store import open_repository

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
        ("s3://bucket/archive", ["unknown scheme 's3'"]),
        ("gs://", ["lacks a bucket"]),
        ("file://host/path", ["file:///"]),
        ("", ["empty"]),
        ("   ", ["empty"]),
    ],
)
@pytest.mark.parametrize("given_by", ["--source", "ISMIP6_SOURCE_URL"])
def test_invalid_source_urls_name_where_the_value_came_from(source, named, given_by, tmp_path):
    """An empty value is an error, never the sample archive; the flag's error names the flag."""
    other = "--source" if given_by == "ISMIP6_SOURCE_URL" else "ISMIP6_SOURCE_URL"
    if given_by == "--source":
        proc = ismip6("run", "--source", source, "--store", str(tmp_path / "store"), env={"ISMIP6_SOURCE_URL": str(tmp_path / "elsewhere")})
    else:
        proc = ismip6("run", "--store", str(tmp_path / "store"), env={"ISMIP6_SOURCE_URL": source})
    assert_config_error(proc, given_by, *named)
    assert other not in proc.stderr
    assert not (tmp_path / "store").exists()
    assert "wrote" not in proc.stdout and "source " not in proc.stdout  # no sample archive, no work


def test_source_without_projection_folder(tmp_path):
    (tmp_path / "src" / "Projection-GIS").mkdir(parents=True)
    proc = ismip6("run", "--source", str(tmp_path / "src"), "--store", str(tmp_path / "store"))
    assert_config_error(proc, "--source", "no Projection-AIS/ folder")
    assert not (tmp_path / "store").exists()
    proc = ismip6("run", "--store", str(tmp_path / "store"), env={"ISMIP6_SOURCE_URL": str(tmp_path / "src")})
    assert_config_error(proc, "ISMIP6_SOURCE_URL=", "no Projection-AIS/ folder")


def test_store_pointing_at_a_folder_that_is_not_icechunk(archive_dir, tmp_path):
    store = tmp_path / "not-a-store"
    store.mkdir()
    (store / "thesis.tex").write_text("precious")
    for command in ("run", "reconcile"):
        proc = ismip6(command, "--source", str(archive_dir), "--store", str(store))
        assert_config_error(proc, "--store=", "not an Icechunk repository" if command == "run" else "no Icechunk repository there")
        assert sorted(p.name for p in store.iterdir()) == ["thesis.tex"]  # nothing written there


@pytest.mark.parametrize("below", [False, True])
@pytest.mark.parametrize("command", ["run", "reconcile"])
def test_store_pointing_at_a_plain_file_is_one_line(command, below, archive_dir, tmp_path):
    plain = tmp_path / "notes.txt"
    plain.write_text("precious")
    store = plain / "store" if below else plain
    proc = ismip6(command, "--source", str(archive_dir), "--store", str(store))
    assert_config_error(proc, f"--store=file://{store}", f"{plain} is a file, not a folder")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = ismip6(command, "--source", str(archive_dir), env={"ISMIP6_STORE_URL": str(store)})
    assert_config_error(proc, "ISMIP6_STORE_URL=", "is a file, not a folder")
    assert plain.read_text() == "precious"


def test_reconcile_refuses_a_store_that_is_not_there_and_creates_nothing(archive_dir, tmp_path):
    typo = tmp_path / "stroe"
    proc = ismip6("reconcile", "--source", str(archive_dir), "--store", str(typo))
    assert_config_error(proc, f"--store=file://{typo}", "no Icechunk repository there")
    assert not typo.exists()
    assert proc.stdout == ""  # no partition reported missing


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


BAD_SETTINGS = [
    ("ISMIP6_WRITER_WAIT_SECONDS", "soon"),
    ("ISMIP6_WRITER_WAIT_SECONDS", "-1"),
    ("ISMIP6_EXECUTOR", "gpu"),
    ("ISMIP6_EXECUTOR", "threads:0"),
    ("ISMIP6_SNAPSHOT_CACHE_NODES", "lots"),
    ("ISMIP6_SNAPSHOT_RETENTION_DAYS", "a week"),
    ("ISMIP6_SKIP_LIST", "/no/such/skip_list.txt"),
    ("ISMIP6_STORE_URL", "ftp://host/x"),
]


@pytest.mark.parametrize("name, value", BAD_SETTINGS)
def test_every_bad_setting_is_one_line_naming_it_before_any_work(name, value, archive_dir, tmp_path):
    env = {"ISMIP6_SOURCE_URL": str(archive_dir), "ISMIP6_STORE_URL": str(tmp_path / "store"), name: value}
    for command in ("run", "reconcile"):
        proc = ismip6(command, env=env)
        assert_config_error(proc, f"{name}={value!r}")
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stdout == ""  # nothing started: not even the source/store banner
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("name", ["ISMIP6_EXECUTOR", "ISMIP6_WRITER_WAIT_SECONDS", "ISMIP6_SKIP_LIST"])
def test_a_setting_set_to_nothing_is_an_error_not_the_default(name, archive_dir, tmp_path):
    proc = ismip6("reconcile", "--source", str(archive_dir), "--store", str(tmp_path / "store"), env={name: ""})
    assert_config_error(proc, f"{name} is set but empty")


def test_settings_are_read_once_and_checked_in_one_place(monkeypatch):
    """No module but settings.py reads the environment (writing gcsfs's own switch is allowed)."""
    package = Path(__file__).resolve().parents[1] / "ismip6_assets"
    readers = [
        f"{path.relative_to(package)}:{n}"
        for path in package.rglob("*.py")
        if path.name != "settings.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ("os.environ" in line or "getenv" in line) and "os.environ.setdefault(\"GCSFS_" not in line
    ]
    assert readers == []
    from ismip6_assets.settings import load_settings

    settings = load_settings(environ={"ISMIP6_WRITER_WAIT_SECONDS": "2.5", "ISMIP6_SNAPSHOT_CACHE_NODES": "9"})
    assert (settings.writer_wait_seconds, settings.snapshot_cache_nodes) == (2.5, 9)
    with pytest.raises(ConfigError, match=r"ISMIP6_SNAPSHOT_CACHE_NODES='3x'"):
        load_settings(environ={"ISMIP6_SNAPSHOT_CACHE_NODES": "3x"})


def test_the_library_knows_neither_dagster_nor_the_environment():
    """`ismip6_assets/core` receives values: it never imports Dagster, the settings module or the
    Dagster layer, and never reads the environment (configuration travels with the run)."""
    core = Path(__file__).resolve().parents[1] / "ismip6_assets" / "core"
    offenders = [
        f"{path.relative_to(core)}: {needle}"
        for path in core.rglob("*.py")
        for needle in ("import dagster", "from dagster", "ismip6_assets.settings", "ismip6_assets.defs", "ismip6_assets.cli", "os.environ[", "os.environ.get", "getenv")
        if needle in path.read_text()
    ]
    assert offenders == []


def test_dagster_fails_loading_the_definitions_with_the_same_line(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ISMIP6_SOURCE_URL": str(tmp_path / "src"), "ISMIP6_STORE_URL": str(tmp_path / "store"),
           "ISMIP6_WRITER_WAIT_SECONDS": "forever"}
    dagster = Path(sys.executable).with_name("dagster")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    assert "ISMIP6_WRITER_WAIT_SECONDS='forever': give a number of seconds" in proc.stdout + proc.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "src").exists()


def test_a_misspelt_setting_is_named_with_the_one_it_resembles(archive_dir, tmp_path):
    proc = ismip6("reconcile", "--source", str(archive_dir), "--store", str(tmp_path / "store"), env={"ISMIP6_STORE": str(tmp_path / "typo")})
    assert_config_error(proc, "ISMIP6_STORE is not a setting of ismip6_assets (did you mean ISMIP6_STORE_URL?)")
    assert len(proc.stderr.strip().splitlines()) == 1
