"""Configuration from the environment, with an embedded default that needs no cloud.

`resolve` checks every setting before any work starts, so a bad one is one clear error naming it.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

from ismip6_assets.locations import ConfigError, Location, parse_location
from ismip6_assets.paths import ARCHIVE_TOP

SOURCE_ENV = "ISMIP6_SOURCE_URL"
STORE_ENV = "ISMIP6_STORE_URL"
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
SNAPSHOT_CACHE_ENV = "ISMIP6_SNAPSHOT_CACHE_NODES"
SKIP_LIST_ENV = "ISMIP6_SKIP_LIST"
SNAPSHOT_RETENTION_ENV = "ISMIP6_SNAPSHOT_RETENTION_DAYS"
# The store_maintenance job expires history older than this (readers need only the head; tags stay).
DEFAULT_SNAPSHOT_RETENTION_DAYS = 7.0
# Icechunk keeps every snapshot a process opens, up to 500,000 nodes by default. Each commit makes a
# new one, so a worker committing partition after partition held ~11 of them: ~40 MB each on the
# full-shape store (45,200 nodes, ~4.5 per file), 1.07 GB per worker (bench/throughput.py). A
# writer reads two or three: the head it plans on and the one it commits. 150,000 nodes keeps three
# full-archive snapshots. Icechunk's own cache-size warning is silenced (store.py: it fires from a
# fifth of the cache on), so an archive whose snapshot outgrows this needs the setting raised by hand.
DEFAULT_SNAPSHOT_CACHE_NODES = 150_000


def data_dir() -> Path:
    """``data/`` in the source checkout (git-ignored), else in the working directory."""
    checkout = Path(__file__).resolve().parents[1]
    base = checkout if (checkout / "pyproject.toml").exists() else Path.cwd()
    return base / "data"


def default_source_url() -> str:
    return str(data_dir() / "sample-archive")


def default_store_url() -> str:
    return str(data_dir() / "store")


def source_url() -> str:
    return os.environ.get(SOURCE_ENV) or default_source_url()


def store_url() -> str:
    return os.environ.get(STORE_ENV) or default_store_url()


def skip_list_path() -> str | None:
    """``ISMIP6_SKIP_LIST``: a skip list other than the packaged one (None: the packaged one)."""
    return os.environ.get(SKIP_LIST_ENV) or None


def snapshot_cache_nodes() -> int:
    text = os.environ.get(SNAPSHOT_CACHE_ENV, "").strip()
    if not text:
        return DEFAULT_SNAPSHOT_CACHE_NODES
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{SNAPSHOT_CACHE_ENV}={text!r}: give a positive number of snapshot nodes (default {DEFAULT_SNAPSHOT_CACHE_NODES})")
    return int(text)


def snapshot_retention() -> timedelta:
    """``ISMIP6_SNAPSHOT_RETENTION_DAYS``: how old a snapshot must be for `store_maintenance` to expire it."""
    text = os.environ.get(SNAPSHOT_RETENTION_ENV, "").strip()
    if not text:
        return timedelta(days=DEFAULT_SNAPSHOT_RETENTION_DAYS)
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days >= 0 or days == float("inf"):
        raise ConfigError(f"{SNAPSHOT_RETENTION_ENV}={text!r}: give a number of days >= 0 (default {DEFAULT_SNAPSHOT_RETENTION_DAYS:g})")
    return timedelta(days=days)


def check_credentials_file() -> None:
    """A credentials file that is named but unreadable fails here, not deep inside a client.

    The message names the setting and the path, never the file's content.
    """
    path = os.environ.get(CREDENTIALS_ENV)
    if not path:
        return
    try:
        with open(path) as f:
            info = json.load(f)
    except OSError as exc:
        raise ConfigError(f"{CREDENTIALS_ENV}={path}: cannot read it ({exc.strerror})") from None
    except ValueError:
        raise ConfigError(f"{CREDENTIALS_ENV}={path}: not a JSON credentials file") from None
    if not isinstance(info, dict) or "type" not in info:
        raise ConfigError(f"{CREDENTIALS_ENV}={path}: JSON without a credentials 'type'")


def check_source(source: Location) -> None:
    try:
        has_top = source.fs.isdir(source.join(ARCHIVE_TOP).fs_path)
    except Exception as exc:  # noqa: BLE001 - any client error is a configuration problem here
        raise ConfigError(f"{SOURCE_ENV}={source.url}: cannot list it ({type(exc).__name__})") from None
    if not has_top:
        raise ConfigError(f"{SOURCE_ENV}={source.url}: no {ARCHIVE_TOP}/ folder there (expected {source.url}/{ARCHIVE_TOP}/INST/MODEL/EXP/*.nc)")


def resolve(source: str | None = None, store: str | None = None, check: bool = True) -> tuple[Location, Location]:
    """Parse (and with `check`, verify) both settings before any work."""
    source_loc = parse_location(source or source_url(), SOURCE_ENV)
    store_loc = parse_location(store or store_url(), STORE_ENV)
    if check:
        snapshot_cache_nodes()
        snapshot_retention()
        from ismip6_assets.skip_list import SkipList

        SkipList.default(skip_list_path())  # a malformed entry is one line naming the file and line
        if source_loc.url == parse_location(default_source_url(), SOURCE_ENV).url and not source_loc.exists():
            from ismip6_assets.sample_archive import write_sample_archive

            write_sample_archive(source_loc.path)  # the embedded default works with zero configuration
        if source_loc.needs_credentials_check or store_loc.needs_credentials_check:
            check_credentials_file()
        check_source(source_loc)
    return source_loc, store_loc
