"""Dagster resources: where the archive and the store are, how to reach them, and how runs work.

Configuration travels with the run: every field of `ArchiveResource` is a setting's raw text, filled
by `dg.EnvVar` (resolved in the process that runs the step: the daemon's run worker, a Kubernetes
pod) or by run config (`ismip6 run` passes its flags that way). `ArchiveResource.settings` checks
them all once, with the same checker `ismip6` uses, and hands checked values down to the library.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import dagster as dg
import icechunk
from dagster_gcp import GCSResource

from ismip6_assets.core.executors import ExecutorSpec
from ismip6_assets.core.locations import ConfigError, Location
from ismip6_assets.core.sample_archive import write_sample_archive
from ismip6_assets.settings import (
    CREDENTIALS_ENV,
    EMULATOR_ENV,
    EXECUTOR_ENV,
    SKIP_LIST_ENV,
    SNAPSHOT_CACHE_ENV,
    SNAPSHOT_RETENTION_ENV,
    SOURCE_ENV,
    STORE_ENV,
    WRITER_WAIT_ENV,
    Settings,
    default_source_url,
    default_store_url,
    load_settings,
    process_environment,
)
from ismip6_assets.core.skip_list import SkipList
from ismip6_assets.core.store import open_repository, writer_lock

# Resource field -> the environment variable `dg.EnvVar` fills it from.
FIELD_ENV = {
    "source_url": SOURCE_ENV,
    "store_url": STORE_ENV,
    "skip_list": SKIP_LIST_ENV,
    "executor": EXECUTOR_ENV,
    "writer_wait_seconds": WRITER_WAIT_ENV,
    "snapshot_cache_nodes": SNAPSHOT_CACHE_ENV,
    "snapshot_retention_days": SNAPSHOT_RETENTION_ENV,
    "storage_emulator_host": EMULATOR_ENV,
    "credentials_file": CREDENTIALS_ENV,
    "gcloud_config": "CLOUDSDK_CONFIG",
}


class ArchiveResource(dg.ConfigurableResource):
    """The ISMIP6 source archive and the Icechunk store it is virtualized into, and how to reach them.

    Every field but `gcs` is a setting's text as the environment variable in `FIELD_ENV` would hold
    it (None: unset, the default).
    """

    source_url: str
    store_url: str
    skip_list: str | None = None
    executor: str | None = None
    writer_wait_seconds: str | None = None
    snapshot_cache_nodes: str | None = None
    snapshot_retention_days: str | None = None
    storage_emulator_host: str | None = None
    credentials_file: str | None = None
    gcloud_config: str | None = None
    # dagster-gcp: project and credentials for gs:// listings, the index and the failure log.
    # None: GCSResource(project=None), used only when a location is gs://.
    gcs: GCSResource | None = None

    def as_environ(self) -> dict[str, str]:
        """The fields as the environment variables they stand for (unset ones left out)."""
        return {env: str(getattr(self, name)) for name, env in FIELD_ENV.items() if getattr(self, name) is not None}

    @cached_property
    def settings(self) -> Settings:
        """Every field checked, once per resource: a bad one is one line naming its variable."""
        return load_settings(environ=self.as_environ())

    def _bind(self, location: Location) -> Location:
        return location.with_gcs(self.gcs or GCSResource(project=None), self.settings.gcs_access)

    @cached_property
    def source(self) -> Location:
        source = self._bind(self.settings.source)
        if not source.exists():
            if self.source_url == default_source_url():
                write_sample_archive(source.path)  # the embedded default works with zero configuration
            else:
                raise ConfigError(f"{SOURCE_ENV}={self.source_url}: no archive there")
        return source

    @cached_property
    def store(self) -> Location:
        return self._bind(self.settings.store)

    @cached_property
    def skip_list_entries(self) -> SkipList:
        return self.settings.skip_list_entries()

    @property
    def executor_spec(self) -> ExecutorSpec:
        return self.settings.executor

    def repository(self) -> icechunk.Repository:
        return open_repository(self.store, self.source, snapshot_cache_nodes=self.settings.snapshot_cache_nodes)

    def writer_lock(self):
        return writer_lock(self.store, self.settings.writer_wait_seconds)

    def run_config(self) -> dict:
        """This resource's fields as run config, so a launched run uses exactly these values."""
        fields = {name: getattr(self, name) for name in FIELD_ENV if getattr(self, name) is not None}
        return {"resources": {"archive": {"config": fields}}}


def archive_resource_from_environment(environ: Mapping[str, str] | None = None) -> ArchiveResource:
    """The resource `dagster dev`, the daemon and their runs use: each set variable as `dg.EnvVar`
    (resolved where the run runs), each unset one as its default. Checked here once, so a bad
    setting fails loading the code location with the same one line `ismip6` prints."""
    environ = process_environment() if environ is None else environ
    load_settings(environ=environ)
    fields = {name: dg.EnvVar(env) for name, env in FIELD_ENV.items() if environ.get(env) is not None}
    fields.setdefault("source_url", default_source_url())
    fields.setdefault("store_url", default_store_url())
    project = dg.EnvVar("GOOGLE_CLOUD_PROJECT") if environ.get("GOOGLE_CLOUD_PROJECT") else None
    return ArchiveResource(**fields, gcs=GCSResource(project=project))


def archive_resource_for(settings: Settings, environ: Mapping[str, str] | None = None) -> ArchiveResource:
    """The resource of a command: its checked URLs (flags or variables) and the variables it was
    started with, as literal values, so the runs it launches carry them as run config."""
    environ = process_environment() if environ is None else environ
    fields = {name: environ[env] for name, env in FIELD_ENV.items() if environ.get(env) is not None}
    fields.update(source_url=settings.source_url, store_url=settings.store_url)
    return ArchiveResource(**fields)
