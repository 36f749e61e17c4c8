"""Where the archive and the store live: local paths, ``file://`` and ``gs://`` URLs.

One `Location` type hands out each client a location needs (fsspec filesystem for listing and
small files, an obstore store for VirtualiZarr, Icechunk storage and virtual-chunk containers) and
does what differs between schemes (writes that must be atomic or exclusive, reads pinned to the
indexed version, a snippet that opens the store), so every other module is scheme-agnostic.

A gs:// location carries the identity it acts as explicitly: the dagster-gcp `GCSResource` given
by `with_gcs`, kept through `join` and pickling, so every client built from it (gcsfs, obstore)
reads and writes as that one principal, in any process the location is handed to.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any
from pathlib import Path
from urllib.parse import urlparse

# gcsfs probes hierarchical-namespace buckets over gRPC unless told not to: a long gRPC timeout per
# bucket against an emulator or without network. Must be set before gcsfs is first imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from ismip6_assets.core.gcs import NO_ACCESS_CONFIG, GcsAccess  # noqa: E402 - after the gcsfs setting above

SCHEMES = ("file", "gs")


_read_stores: dict[tuple, Any] = {}


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting."""


class Unreachable(ConfigError):
    """A gs:// location whose endpoint does not answer; the message names the host and the cause."""


# The settings that name the two locations, as errors about them name them (settings.py reads them).
SOURCE_SETTING = "ISMIP6_SOURCE_URL"
STORE_SETTING = "ISMIP6_STORE_URL"


@dataclass(frozen=True)
class Location:
    """A directory-like location: ``scheme://bucket/path`` (``bucket`` is empty for local files)."""

    scheme: str
    bucket: str
    path: str  # absolute for 'file', bucket-relative without leading '/' for 'gs'
    # gs:// only: the dagster-gcp GCSResource (anything with ``get_client()``) whose project and
    # credentials every client of this location uses; None: what the clients find themselves.
    gcs: Any = field(default=None, compare=False, repr=False)
    # gs:// only: where GCS is (an emulator or the real service) and the ADC file found, read once
    # from the environment by the Dagster layer or the CLI and carried with the location.
    access: GcsAccess = field(default=NO_ACCESS_CONFIG, compare=False, repr=False)

    def with_gcs(self, resource, access: GcsAccess | None = None) -> Location:
        """This location acting as `resource`'s principal, reached through `access` (gs:// only;
        local paths need neither)."""
        if self.scheme != "gs":
            return self
        return replace(self, gcs=resource, access=access if access is not None else self.access)

    def __getstate__(self) -> dict:
        # Clients are rebuilt where the location is unpickled (a worker process), from `gcs`.
        # Dagster resources do not pickle: the resource travels as its class and field values.
        gcs = self.gcs
        if gcs is not None and hasattr(type(gcs), "model_fields"):
            gcs = ("resource", type(gcs), {name: getattr(gcs, name) for name in type(gcs).model_fields})
        return {"scheme": self.scheme, "bucket": self.bucket, "path": self.path, "gcs": gcs, "access": self.access}

    def __setstate__(self, state: dict) -> None:
        gcs = state["gcs"]
        if isinstance(gcs, tuple) and gcs[:1] == ("resource",):
            state = {**state, "gcs": gcs[1](**gcs[2])}
        self.__dict__.update({"access": NO_ACCESS_CONFIG, **state})

    @property
    def local_dir(self) -> str | None:
        """The directory on this machine, or None for an object store."""
        return self.path if self.scheme == "file" else None

    @property
    def writer_lock_path(self) -> str | None:
        """The file whose lock the one writer of a local store holds (store.writer_lock), inside the
        store; None for an object store, whose writers meet through Icechunk instead."""
        return os.path.join(self.path, ".ismip6-writer.lock") if self.scheme == "file" else None

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
        return Location(self.scheme, self.bucket, "/" + path if self.scheme == "file" else path, self.gcs, self.access)

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
        from ismip6_assets.core.gcs import filesystem_for

        return filesystem_for(self.gcs, self.access)

    def obstore(self):
        """An obstore store rooted at this location (for VirtualiZarr's registry)."""
        if self.scheme == "file":
            from obstore.store import LocalStore

            return LocalStore(self.path)
        from ismip6_assets.core.gcs import obstore_gcs_store

        return obstore_gcs_store(self.access, self.bucket, self.path, self.gcs)

    def exists(self) -> bool:
        return self.fs.exists(self.fs_path)

    def check_reachable(self, setting: str) -> None:
        """gs:// only: one connection to where this location's clients go (`gcs.unreachable`), so an
        endpoint that is not there is one line naming it within seconds, instead of the clients'
        retries and then a listing that looks empty; `Unreachable` naming `setting` otherwise."""
        if self.scheme != "gs":
            return
        from ismip6_assets.core.gcs import unreachable

        problem = unreachable(self.access)
        if problem:
            raise Unreachable(f"{problem} ({setting}={self.url})")

    @property
    def needs_credentials_check(self) -> bool:
        """Whether a credentials file in the environment will be used to reach this location."""
        return self.scheme == "gs"

    # --- reads of source files -------------------------------------------------------------------

    @property
    def read_store(self):
        """This location's obstore store, one per location, identity and process (it holds the
        connection pool; a location unpickled in a worker for each file finds it there too)."""
        key = (self, repr(self.gcs), self.access)
        if key not in _read_stores:
            if len(_read_stores) >= 8:
                _read_stores.clear()
            _read_stores[key] = self.obstore()
        return _read_stores[key]

    def open_for_reading(self, relpath: str):
        """What ``xr.open_dataset`` takes for a file here: a local path, else a file object. On
        gs:// it reads in 1 MiB blocks through obstore (`BlockStoreReader`: a HEAD, then a block
        holds the header of most files), where gcsfs's open adds requests of its own (object metadata,
        a directory probe) before the reads."""
        if self.scheme == "file":
            return self.join(relpath).path
        from obspec_utils.readers import BlockStoreReader

        return _FileObject(BlockStoreReader(self.read_store, relpath))

    def pinned_read_options(self, fingerprint: str) -> dict | None:
        """obstore get options that make every read of a file fail unless the object is still the
        version `fingerprint` names (GCS: ``generation:N`` -> ``?generation=N``, which answers 404
        for any other generation); None where reads cannot be pinned (local files: the caller
        compares the fingerprint again after reading, a system call)."""
        if self.scheme == "gs" and fingerprint.startswith("generation:"):
            return {"version": fingerprint.removeprefix("generation:")}
        return None

    # --- writes of small files beside the store ----------------------------------------------------

    def put_atomic(self, target: Location, data: bytes) -> None:
        """Write `target` so a reader sees the old object or the new one, never half of it."""
        if self.scheme == "file":
            folder = os.path.dirname(target.path)
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target.path)
        else:
            self.fs.pipe(target.fs_path, data)  # one object PUT: atomic

    def put_many(self, docs: dict[str, bytes]) -> None:
        """Write files under this location (paths relative to it), each atomically; on gs:// in one
        concurrent batch (fsspec's ``pipe`` of a dict) rather than a round trip after another."""
        if self.scheme == "file":
            for relpath, data in docs.items():
                self.put_atomic(self.join(relpath), data)
        else:
            self.fs.pipe({self.join(relpath).fs_path: data for relpath, data in docs.items()})

    def put_exclusive(self, target: Location, data: bytes) -> None:
        """Create `target` with `data`; FileExistsError when the name is taken."""
        if self.scheme == "gs":
            # gcsfs's open("xb") is a resumable upload whose ifGenerationMatch=0 the emulator
            # ignores (gcsfs calls "xb" experimental); pipe_file(mode="create") is one upload
            # with the precondition, FileExistsError when the name is taken.
            self.fs.pipe_file(target.fs_path, data, mode="create")
        else:
            with self.fs.open(target.fs_path, "xb") as f:
                f.write(data)

    # --- Icechunk ---------------------------------------------------------------------------------

    def icechunk_storage(self):
        """Icechunk storage for a repository at this location."""
        import icechunk

        if self.scheme == "file":
            return icechunk.local_filesystem_storage(self.path)
        from ismip6_assets.core.gcs import icechunk_gcs_storage

        return icechunk_gcs_storage(self.access, self.bucket, self.path)

    def virtual_chunk_container(self):
        """The container for virtual refs into this location (url_prefix = `prefix_url`)."""
        import icechunk

        if self.scheme == "file":
            return icechunk.VirtualChunkContainer(self.prefix_url, icechunk.local_filesystem_store(self.path))
        from ismip6_assets.core.gcs import icechunk_gcs_container

        return icechunk_gcs_container(self)

    def virtual_chunk_credentials(self):
        """How this process reads virtual chunks of this location."""
        import icechunk

        if self.scheme == "file":
            return icechunk.credentials.LocalFileSystemAccess
        from ismip6_assets.core.gcs import icechunk_gcs_credentials

        return icechunk_gcs_credentials(self.access)

    def storage_code(self) -> str:
        """Python that builds Icechunk storage for this location, for a reader to paste (no secrets)."""
        if self.scheme == "file":
            return f"icechunk.local_filesystem_storage(\n        {self.path!r}\n    )"
        return f"icechunk.gcs_storage(\n        bucket={self.bucket!r},\n        prefix={self.path!r},\n        from_env=True,\n    )"

    def chunk_credentials_code(self) -> str:
        """Python for a reader's credentials to this location's virtual chunks (the public archive: anonymous)."""
        if self.scheme == "file":
            return "icechunk.credentials.LocalFileSystemAccess"
        return "icechunk.gcs_credentials(anonymous=True)"


class _FileObject(io.RawIOBase):
    """An obspec reader as the `io` file object xarray's engines recognise (they test io.IOBase)."""

    def __init__(self, reader) -> None:
        self._reader = reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._reader.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._reader.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()


def parse_location(value: str | os.PathLike, setting: str, access: GcsAccess = NO_ACCESS_CONFIG) -> Location:
    """Parse a local path, ``file://`` or ``gs://`` URL; raise `ConfigError` naming `setting`.

    `access`: how a gs:// location reaches GCS (default: the real service, credentials found by
    the clients themselves)."""
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
    return Location("gs", parsed.netloc, parsed.path.strip("/"), access=access)
