"""Configuration: the one place that reads the environment, with an embedded default that needs no cloud.

`load_settings` reads every setting and checks it, so a bad one is one clear error naming it (and
the value) before any work. It is called where a command or a run starts: by `ismip6`, by
`definitions.py` when Dagster loads the code location, and by `ArchiveResource` when a run starts
(from the resource's own fields, which `dg.EnvVar` fills in the run's process). Everything below
receives the checked values as arguments; nothing else reads the environment.
Only an unset variable means its default: a variable set to nothing is an error, not a fallback.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ismip6_assets.core.executors import EXECUTOR_ENV, ExecutorSpec, parse_spec
from ismip6_assets.core.gcs import GcsAccess, adc_file
from ismip6_assets.core.locations import SOURCE_SETTING, STORE_SETTING, ConfigError, Location, parse_location
from ismip6_assets.core.paths import ARCHIVE_TOP
from ismip6_assets.core.skip_list import SKIP_LIST_SETTING, SkipList
from ismip6_assets.core.store import DEFAULT_SNAPSHOT_CACHE_NODES, DEFAULT_WRITER_WAIT_SECONDS, check_store
from ismip6_assets.core.virtualize import one_line

SOURCE_ENV = SOURCE_SETTING
STORE_ENV = STORE_SETTING
SKIP_LIST_ENV = SKIP_LIST_SETTING
WRITER_WAIT_ENV = "ISMIP6_WRITER_WAIT_SECONDS"
SNAPSHOT_CACHE_ENV = "ISMIP6_SNAPSHOT_CACHE_NODES"
SNAPSHOT_RETENTION_ENV = "ISMIP6_SNAPSHOT_RETENTION_DAYS"
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
# Read here and nowhere else (Dagster and Google's clients read their own as well).
OTHER_ENV = (CREDENTIALS_ENV, EMULATOR_ENV, "CLOUDSDK_CONFIG", "GOOGLE_CLOUD_PROJECT", "DAGSTER_HOME")
ISMIP6_ENV = (SOURCE_ENV, STORE_ENV, SKIP_LIST_ENV, EXECUTOR_ENV, WRITER_WAIT_ENV, SNAPSHOT_CACHE_ENV, SNAPSHOT_RETENTION_ENV)

# The store_maintenance job expires history older than this (readers need only the head; tags stay).
DEFAULT_SNAPSHOT_RETENTION_DAYS = 7.0


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
    writer_wait_seconds: float = DEFAULT_WRITER_WAIT_SECONDS
    snapshot_cache_nodes: int = DEFAULT_SNAPSHOT_CACHE_NODES
    snapshot_retention_days: float = DEFAULT_SNAPSHOT_RETENTION_DAYS
    credentials_file: str | None = None  # GOOGLE_APPLICATION_CREDENTIALS
    emulator_host: str | None = None  # STORAGE_EMULATOR_HOST as a URL
    gcloud_config: str | None = None  # CLOUDSDK_CONFIG
    gcp_project: str | None = None  # GOOGLE_CLOUD_PROJECT
    dagster_home: str | None = None

    @property
    def gcs_access(self) -> GcsAccess:
        return GcsAccess(self.emulator_host, adc_file(self.credentials_file, self.gcloud_config))

    @property
    def source(self) -> Location:
        return parse_location(self.source_url, self.source_setting, self.gcs_access)

    @property
    def store(self) -> Location:
        return parse_location(self.store_url, self.store_setting, self.gcs_access)

    @property
    def snapshot_retention(self) -> timedelta:
        """How old a snapshot must be for `store_maintenance` to expire it."""
        return timedelta(days=self.snapshot_retention_days)

    def skip_list_entries(self) -> SkipList:
        return SkipList.default(self.skip_list)


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


def process_environment() -> dict[str, str]:
    """This process's environment, for the Dagster layer to build a resource from, or to hand to a
    process it starts (the daemon of `ismip6 run`)."""
    return dict(os.environ)


def check_names(environ) -> None:
    """A variable that looks like one of ours but is not (a typo) fails naming it and the one it resembles."""
    for name in sorted(n for n in environ if n.startswith("ISMIP6_") and n not in ISMIP6_ENV):
        close = difflib.get_close_matches(name, ISMIP6_ENV, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "known: " + ", ".join(ISMIP6_ENV)
        raise ConfigError(f"{name} is not a setting of ismip6_assets ({hint})")


def load_settings(source: str | None = None, store: str | None = None, environ=None) -> Settings:
    """Every setting from the environment (`source`/`store`: the command-line flags), each checked."""
    environ = os.environ if environ is None else environ
    check_names(environ)
    source_url, source_setting = _url("--source", source, SOURCE_ENV, environ, default_source_url())
    store_url, store_setting = _url("--store", store, STORE_ENV, environ, default_store_url())
    executor = _text(environ, EXECUTOR_ENV)
    skip_list = _text(environ, SKIP_LIST_ENV)
    if skip_list is not None and not os.path.isfile(skip_list):
        raise ConfigError(f"{SKIP_LIST_ENV}={skip_list!r}: no such file")
    SkipList.default(skip_list)  # a malformed entry is one line naming the file and line
    emulator = (environ.get(EMULATOR_ENV) or "").strip().rstrip("/")
    settings = Settings(
        source_url=source_url,
        store_url=store_url,
        source_setting=source_setting,
        store_setting=store_setting,
        skip_list=skip_list,
        executor=parse_spec(executor) if executor is not None else parse_spec(None),
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
    # info, not isdir: isdir answers False for any client error, and a listing that failed must not
    # read as "no folder there".
    try:
        has_top = source.fs.info(source.join(ARCHIVE_TOP).fs_path)["type"] == "directory"
    except FileNotFoundError:
        has_top = False
    except Exception as exc:  # noqa: BLE001 - any client error is a configuration problem here
        raise ConfigError(f"{setting}={source.url}: cannot list it ({one_line(exc)})") from None
    if not has_top:
        raise ConfigError(f"{setting}={source.url}: no {ARCHIVE_TOP}/ folder there (expected {source.url}/{ARCHIVE_TOP}/INST/MODEL/EXP/*.nc)")


def resolve(settings: Settings, check: bool = True, existing_store: bool = False) -> tuple[Location, Location]:
    """Both locations of `settings`; with `check`, credentials read, a gs:// endpoint probed, the
    source listed and the store looked at first (`existing_store`: a repository must be there; nothing is created)."""
    source_loc, store_loc = settings.source, settings.store
    if check:
        if source_loc.url == parse_location(default_source_url(), SOURCE_ENV).url and not source_loc.exists():
            from ismip6_assets.core.sample_archive import write_sample_archive

            write_sample_archive(source_loc.path)  # the embedded default works with zero configuration
        if source_loc.needs_credentials_check or store_loc.needs_credentials_check:
            check_credentials_file(settings)
        reached = set()
        for location, setting in ((source_loc, settings.source_setting), (store_loc, settings.store_setting)):
            if location.scheme == "gs" and location.access not in reached:  # one probe an endpoint
                location.check_reachable(setting)
                reached.add(location.access)
        check_source(source_loc, settings.source_setting)
        check_store(store_loc, settings.store_setting, must_exist=existing_store)
    return source_loc, store_loc
