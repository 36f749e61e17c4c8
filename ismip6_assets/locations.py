"""Where the archive and the store live: local paths, ``file://`` and ``gs://`` URLs.

One `Location` type hands out each client a location needs (fsspec filesystem for listing and
small files, an obstore store for VirtualiZarr, Icechunk storage and virtual-chunk containers), so
every other module is scheme-agnostic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

# gcsfs probes hierarchical-namespace buckets over gRPC unless told not to: two 60 s timeouts per
# bucket against an emulator or without network. Must be set before gcsfs is first imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

SCHEMES = ("file", "gs")


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting."""


@dataclass(frozen=True)
class Location:
    """A directory-like location: ``scheme://bucket/path`` (``bucket`` is empty for local files)."""

    scheme: str
    bucket: str
    path: str  # absolute for 'file', bucket-relative without leading '/' for 'gs'

    @property
    def url(self) -> str:
        if self.scheme == "file":
            return f"file://{self.path}"
        return f"gs://{self.bucket}/{self.path}".rstrip("/")

    @property
    def prefix_url(self) -> str:
        """The URL with a trailing '/', as virtual-chunk containers and registries want it."""
        return self.url.rstrip("/") + "/"

    @property
    def fs_path(self) -> str:
        """The path as fsspec names it (no scheme)."""
        return self.path if self.scheme == "file" else f"{self.bucket}/{self.path}".rstrip("/")

    def join(self, *parts: str) -> Location:
        path = "/".join(p.strip("/") for p in (self.path, *parts) if p.strip("/"))
        return Location(self.scheme, self.bucket, "/" + path if self.scheme == "file" else path)

    def url_of(self, relpath: str) -> str:
        return self.join(relpath).url

    def relpath_of(self, url_or_fs_path: str) -> str:
        """Path of `url_or_fs_path` relative to this location."""
        for base in (self.prefix_url, self.fs_path.rstrip("/") + "/"):
            if url_or_fs_path.startswith(base):
                return url_or_fs_path[len(base) :]
        raise ValueError(f"{url_or_fs_path!r} is not under {self.url}")

    @cached_property
    def fs(self):
        """fsspec filesystem for listing, small reads and small writes."""
        if self.scheme == "file":
            from fsspec.implementations.local import LocalFileSystem

            return LocalFileSystem()
        from ismip6_assets.gcs import gcs_filesystem

        return gcs_filesystem()

    def obstore(self):
        """An obstore store rooted at this location (for VirtualiZarr's registry)."""
        if self.scheme == "file":
            from obstore.store import LocalStore

            return LocalStore(self.path)
        from ismip6_assets.gcs import obstore_gcs_store

        return obstore_gcs_store(self.bucket, self.path)

    def exists(self) -> bool:
        return self.fs.exists(self.fs_path)


def parse_location(value: str | os.PathLike, setting: str) -> Location:
    """Parse a local path, ``file://`` or ``gs://`` URL; raise `ConfigError` naming `setting`."""
    text = os.fspath(value).strip() if value is not None else ""
    if not text:
        raise ConfigError(f"{setting} is empty: give a local path, file:// or gs:// URL")
    if "://" not in text:
        return Location("file", "", str(Path(text).expanduser().resolve()))
    parsed = urlparse(text)
    if parsed.scheme not in SCHEMES:
        raise ConfigError(f"{setting}={text!r}: unknown scheme {parsed.scheme!r} (use a local path, file:// or gs://)")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"{setting}={text!r}: file:// URLs take an absolute path (file:///...)")
        return Location("file", "", str(Path(parsed.path).resolve()))
    if not parsed.netloc:
        raise ConfigError(f"{setting}={text!r}: gs:// URL lacks a bucket name")
    return Location("gs", parsed.netloc, parsed.path.strip("/"))
