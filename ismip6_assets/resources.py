"""Dagster resources: where the archive and the store are, and how to reach them."""

from __future__ import annotations

from functools import cached_property

import dagster as dg
import icechunk
from dagster_gcp import GCSResource

from ismip6_assets.locations import ConfigError, Location, parse_location
from ismip6_assets.sample_archive import write_sample_archive
from ismip6_assets.settings import SOURCE_ENV, STORE_ENV, current, default_source_url
from ismip6_assets.store import open_repository


class ArchiveResource(dg.ConfigurableResource):
    """The ISMIP6 source archive and the Icechunk store it is virtualized into."""

    source_url: str
    store_url: str
    # dagster-gcp: project and credentials for gs:// listings, the index and the failure log.
    # None: GCSResource(project=$GOOGLE_CLOUD_PROJECT), used only when a location is gs://.
    gcs: GCSResource | None = None

    def _bind(self, location: Location) -> Location:
        return location.with_gcs(self.gcs or default_gcs_resource())

    @cached_property
    def source(self) -> Location:
        source = self._bind(parse_location(self.source_url, SOURCE_ENV))
        if not source.exists():
            if self.source_url == default_source_url():
                write_sample_archive(source.path)  # the embedded default works with zero configuration
            else:
                raise ConfigError(f"{SOURCE_ENV}={self.source_url}: no archive there")
        return source

    @cached_property
    def store(self) -> Location:
        return self._bind(parse_location(self.store_url, STORE_ENV))

    def repository(self) -> icechunk.Repository:
        return open_repository(self.store, self.source)


def default_gcs_resource() -> GCSResource:
    return GCSResource(project=current().gcp_project)


def default_archive_resource() -> ArchiveResource:
    """The resource `dagster dev` and the daemon use: every setting checked first, so a bad one
    fails loading the code location with the same one line `ismip6` prints."""
    settings = current()
    return ArchiveResource(source_url=settings.source_url, store_url=settings.store_url, gcs=default_gcs_resource())
