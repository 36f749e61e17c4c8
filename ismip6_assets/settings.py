"""Configuration: the one place that reads the environment, with an embedded default that needs no cloud.

`load_settings` reads every setting and checks it, so a bad one is one clear error naming it (and
the value) before any work: `ismip6` calls it first, `definitions.py` when Dagster loads the code
location, and everything else reads the process's checked `Settings` through `current()`.
Only an unset variable means its default: a variable set to nothing is an error, not a fallback.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ismip6_assets.executors import EXECUTOR_ENV, ExecutorSpec, parse_spec
from ismip6_assets.locations import ConfigError, Location, parse_location
from ismip6_assets.paths import ARCHIVE_TOP

SOURCE_ENV = "ISMIP6_SOURCE_URL"
STORE_ENV = "ISMIP6_STORE_URL"
SKIP_LIST_ENV = "ISMIP6_SKIP_LIST"
PARTITION_WORKERS_ENV = "ISMIP6_PARTITION_WORKERS"
WRITER_WAIT_ENV = "ISMIP6_WRITER_WAIT_SECONDS"
SNAPSHOT_CACHE_ENV = "ISMIP6_SNAPSHOT_CACHE_NODES"
SNAPSHOT_RETENTION_ENV = "ISMIP6_SNAPSHOT_RETENTION_DAYS"
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
# Read here and nowhere else (Dagster and Google's clients read their own as well).
OTHER_ENV = (CREDENTIALS_ENV, EMULATOR_ENV, "CLOUDSDK_CONFIG", "GOOGLE_CLOUD_PROJECT", "DAGSTER_HOME")
ISMIP6_ENV = (SOURCE_ENV, STORE_ENV, SKIP_LIST_ENV, EXECUTOR_ENV, PARTITION_WORKERS_ENV, WRITER_WAIT_ENV, SNAPSHOT_CACHE_ENV, SNAPSHOT_RETENTION_ENV)

DEFAULT_WRITER_WAIT_SECONDS = 300.0
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


@dataclass(frozen=True)
class Settings:
    """Every setting, checked. `source_setting`/`store_setting` name where each URL came from
    (``--source``, ``ISMIP6_SOURCE_URL`` or the default), so an error about it names that."""

    source_url: str
    store_url: str
    source_setting: str = SOURCE_ENV
    store_setting: str = STORE_ENV
    skip_list: str | None = None  # None: the packaged skip_list.txt
    executor: ExecutorSpec = ExecutorSpec("processes")
    partition_workers: int | None = None  # None: one more than CPUs, from POOL_MIN_PARTITIONS runs up
    writer_wait_seconds: float = DEFAULT_WRITER_WAIT_SECONDS
    snapshot_cache_nodes: int = DEFAULT_SNAPSHOT_CACHE_NODES
    snapshot_retention_days: float = DEFAULT_SNAPSHOT_RETENTION_DAYS
    credentials_file: str | None = None  # GOOGLE_APPLICATION_CREDENTIALS
    emulator_host: str | None = None  # STORAGE_EMULATOR_HOST as a URL
    gcloud_config: str | None = None  # CLOUDSDK_CONFIG
    gcp_project: str | None = None  # GOOGLE_CLOUD_PROJECT
    dagster_home: str | None = None

    @property
    def source(self) -> Location:
        return parse_location(self.source_url, self.source_setting)

    @property
    def store(self) -> Location:
        return parse_location(self.store_url, self.store_setting)


def _text(environ, name: str) -> str | None:
    """The variable's value; None when unset; a ConfigError when set to nothing."""
    value = environ.get(name)
    if value is None:
        return None
    if not value.strip():
        raise ConfigError(f"{name} is set but empty: unset it to use the default, or give a value")
    return value.strip()


def _positive_int(name: str, text: str | None, what: str) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name}={text!r}: give a positive whole number of {what}")
    return int(text)


def _non_negative(name: str, text: str | None, default: float, unit: str) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={text!r}: give a number of {unit}, 0 or more (default {default:g})")
    return value


def _url(flag: str, flag_value: str | None, name: str, environ, default: str) -> tuple[str, str]:
    """(value, the setting it came from): the flag when given, else the variable, else the default."""
    if flag_value is not None:
        if not flag_value.strip():
            raise ConfigError(f"{flag} is empty: give a local path, file:// or gs:// URL")
        return flag_value, flag
    value = _text(environ, name)
    return (value, name) if value is not None else (default, name)


def load_settings(source: str | None = None, store: str | None = None, environ=None) -> Settings:
    """Every setting from the environment (`source`/`store`: the command-line flags), each checked."""
    environ = os.environ if environ is None else environ
    source_url, source_setting = _url("--source", source, SOURCE_ENV, environ, default_source_url())
    store_url, store_setting = _url("--store", store, STORE_ENV, environ, default_store_url())
    executor = _text(environ, EXECUTOR_ENV)
    skip_list = _text(environ, SKIP_LIST_ENV)
    if skip_list is not None and not os.path.isfile(skip_list):
        raise ConfigError(f"{SKIP_LIST_ENV}={skip_list!r}: no such file")
    from ismip6_assets.skip_list import SkipList  # it imports this module

    SkipList.default(skip_list)  # a malformed entry is one line naming the file and line
    emulator = (environ.get(EMULATOR_ENV) or "").strip().rstrip("/")
    settings = Settings(
        source_url=source_url,
        store_url=store_url,
        source_setting=source_setting,
        store_setting=store_setting,
        skip_list=skip_list,
        executor=parse_spec(executor) if executor is not None else parse_spec(None),
        partition_workers=_positive_int(PARTITION_WORKERS_ENV, _text(environ, PARTITION_WORKERS_ENV), "worker processes"),
        writer_wait_seconds=_non_negative(WRITER_WAIT_ENV, _text(environ, WRITER_WAIT_ENV), DEFAULT_WRITER_WAIT_SECONDS, "seconds"),
        snapshot_retention_days=_non_negative(SNAPSHOT_RETENTION_ENV, _text(environ, SNAPSHOT_RETENTION_ENV), DEFAULT_SNAPSHOT_RETENTION_DAYS, "days"),
        snapshot_cache_nodes=_positive_int(SNAPSHOT_CACHE_ENV, _text(environ, SNAPSHOT_CACHE_ENV), "snapshot nodes") or DEFAULT_SNAPSHOT_CACHE_NODES,
        credentials_file=environ.get(CREDENTIALS_ENV) or None,
        emulator_host=(emulator if "://" in emulator else f"http://{emulator}") if emulator else None,
        gcloud_config=environ.get("CLOUDSDK_CONFIG") or None,
        gcp_project=environ.get("GOOGLE_CLOUD_PROJECT") or None,
        dagster_home=environ.get("DAGSTER_HOME") or None,
    )
    settings.source, settings.store  # noqa: B018 - parse both URLs now: a bad one names its setting
    return settings


def skip_list_path() -> str | None:
    """``ISMIP6_SKIP_LIST``: a skip list other than the packaged one (None: the packaged one)."""
    return current().skip_list


_installed: Settings | None = None
_loaded: tuple[tuple, Settings] | None = None


def snapshot_retention() -> timedelta:
    """``ISMIP6_SNAPSHOT_RETENTION_DAYS``: how old a snapshot must be for `store_maintenance` to expire it."""
    return timedelta(days=current().snapshot_retention_days)


def current() -> Settings:
    """This process's settings: those `install`ed (a worker gets its parent's), else the environment's.

    Built by `load_settings` once per distinct environment: tests and embedding processes change the
    environment between calls, and the snapshot of a dozen variables costs microseconds.
    """
    global _loaded
    if _installed is not None:
        return _installed
    key = tuple(os.environ.get(name) for name in (*ISMIP6_ENV, *OTHER_ENV))
    if _loaded is None or _loaded[0] != key:
        _loaded = (key, load_settings())
    return _loaded[1]


def install(settings: Settings | None) -> None:
    """Use `settings` in this process from now on (None: read the environment again)."""
    global _installed
    _installed = settings


def check_credentials_file(settings: Settings) -> None:
    """A credentials file that is named but unreadable fails here, not deep inside a client.

    The message names the setting and the path, never the file's content.
    """
    path = settings.credentials_file
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


def check_source(source: Location, setting: str = SOURCE_ENV) -> None:
    try:
        has_top = source.fs.isdir(source.join(ARCHIVE_TOP).fs_path)
    except Exception as exc:  # noqa: BLE001 - any client error is a configuration problem here
        raise ConfigError(f"{setting}={source.url}: cannot list it ({type(exc).__name__})") from None
    if not has_top:
        raise ConfigError(f"{setting}={source.url}: no {ARCHIVE_TOP}/ folder there (expected {source.url}/{ARCHIVE_TOP}/INST/MODEL/EXP/*.nc)")


def resolve(settings: Settings, check: bool = True, existing_store: bool = False) -> tuple[Location, Location]:
    """Both locations of `settings`; with `check`, credentials read, the source listed and the
    store looked at first (`existing_store`: a repository must be there; nothing is created)."""
    source_loc, store_loc = settings.source, settings.store
    if check:
        if source_loc.url == parse_location(default_source_url(), SOURCE_ENV).url and not source_loc.exists():
            from ismip6_assets.sample_archive import write_sample_archive

            write_sample_archive(source_loc.path)  # the embedded default works with zero configuration
        if source_loc.needs_credentials_check or store_loc.needs_credentials_check:
            check_credentials_file(settings)
        check_source(source_loc, settings.source_setting)
        from ismip6_assets.store import check_store  # Icechunk's import, only once the settings are good

        check_store(store_loc, settings.store_setting, must_exist=existing_store)
    return source_loc, store_loc


# --- the environment of the processes this one starts ------------------------------------------

# A fork server's own environment as it starts (runner._worker_context): single-threaded OpenBLAS
# and no jemalloc background thread in pyarrow, so the server runs one thread when it forks.
FORK_SERVER_ENV = {"OPENBLAS_NUM_THREADS": "1", "JE_ARROW_MALLOC_CONF": "background_thread:false"}


@contextmanager
def fork_server_environment() -> Iterator[None]:
    """`FORK_SERVER_ENV` set while the fork server starts, the process's own values again after."""
    saved = {name: os.environ.get(name) for name in FORK_SERVER_ENV}
    os.environ.update(FORK_SERVER_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def environment() -> dict[str, str]:
    """This process's environment as it is now, for a worker to take (`adopt_environment`)."""
    return dict(os.environ)


def adopt_environment(environ: dict[str, str]) -> None:
    """A forked worker takes its parent's environment of now, not its fork server's from when it
    started: clients such as gcsfs and Icechunk read STORAGE_EMULATOR_HOST there."""
    os.environ.clear()
    os.environ.update(environ)
