"""Google Cloud Storage clients, all switched to an emulator by ``STORAGE_EMULATOR_HOST``.

Four clients touch GCS: gcsfs (listing, index parquet, failure log, pickles), google-cloud-storage
(behind dagster-gcp's `GCSResource`), obstore (VirtualiZarr reads of the source) and Icechunk's own
object_store (the repository and its virtual-chunk container). This module is the only place that
decides how each of them authenticates and where it connects:

- an emulator endpoint (`GcsAccess.emulator_host`, from ``STORAGE_EMULATOR_HOST``): every client goes there,
  with no credentials.
- otherwise writes use Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, the
  gcloud ADC file, or the metadata server on GCP); the public source bucket is read anonymously
  when no credentials file is found, so the pipeline reads ``gs://ismip6`` with no setup at all.

Nothing here logs, returns or stores a credential: the emulator "key" holds no secret, and real
credentials are passed to the clients by path or discovered by them. Nothing here reads the
environment either: the Dagster layer (or the CLI) reads it once and hands a `GcsAccess` down, carried
by each `Location`.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

# gcsfs probes hierarchical-namespace buckets over gRPC unless told not to (a long gRPC timeout per
# bucket against an emulator); must be set before gcsfs is first imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from dataclasses import dataclass  # noqa: E402


@dataclass(frozen=True)
class GcsAccess:
    """How this process reaches GCS: an emulator endpoint (a URL), or the real service with the ADC
    file `credentials_file` when one is found (None: the metadata server, else anonymous reads)."""

    emulator_host: str | None = None
    credentials_file: str | None = None


NO_ACCESS_CONFIG = GcsAccess()

# Where the real service answers every client (JSON API, uploads, object_store).
GCS_HOST, GCS_PORT = "storage.googleapis.com", 443
# Long enough for a slow DNS answer and a TLS-less connect across an ocean; short enough that an
# unreachable endpoint is reported within seconds, before the clients' own retries (gcsfs,
# google-cloud-storage and Icechunk each back off and retry for tens of seconds) get their turn.
PROBE_TIMEOUT_SECONDS = 5.0


def endpoint(access: GcsAccess) -> tuple[str, int]:
    """(host, port) every client of `access` connects to: the emulator's, else the real service's."""
    if not access.emulator_host:
        return GCS_HOST, GCS_PORT
    from urllib.parse import urlsplit

    url = urlsplit(access.emulator_host if "://" in access.emulator_host else f"http://{access.emulator_host}")
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def unreachable(access: GcsAccess, timeout: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    """None when `access`'s endpoint accepts a TCP connection within `timeout` seconds; else one
    line naming the endpoint and the cause (name not resolved, connection refused, timed out).

    One connection, no request and no credentials: it tells "GCS is not there" apart from "the
    folder is not there", which a listing through gcsfs cannot (its retries end in an empty answer).
    A direct connection, as gcsfs makes (it does not use a proxy from the environment)."""
    import socket
    import threading
    import time

    host, port = endpoint(access)
    where = f"the GCS emulator at {host}:{port} (STORAGE_EMULATOR_HOST)" if access.emulator_host else f"GCS at {host}:{port}"
    deadline = time.monotonic() + timeout
    # getaddrinfo takes no timeout: it runs in a daemon thread the probe stops waiting for.
    answer: list = []
    resolver = threading.Thread(target=lambda: answer.append(_addresses(host, port)), daemon=True)
    resolver.start()
    resolver.join(timeout)
    if not answer:
        return f"cannot reach {where}: timed out resolving {host} after {timeout:g} s"
    if isinstance(answer[0], OSError):
        return f"cannot reach {where}: name not resolved ({answer[0].strerror or answer[0]})"
    cause = "no address"
    for family, address in answer[0]:
        left = deadline - time.monotonic()
        if left <= 0:
            cause = f"timed out after {timeout:g} s"
            break
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(left)
                s.connect(address)
            return None
        except TimeoutError:
            cause = f"timed out after {timeout:g} s"
        except ConnectionRefusedError:
            cause = "connection refused"
        except OSError as exc:
            cause = (exc.strerror or type(exc).__name__).lower()
    return f"cannot reach {where}: {cause}"


def _addresses(host: str, port: int):
    """(family, sockaddr) of each address of `host`, or the OSError resolving it raised."""
    import socket

    try:
        return [(family, address) for family, _, _, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    except OSError as exc:
        return exc


def emulator_service_account_key(host: str) -> str:
    """object_store (obstore, Icechunk) reaches an emulator only through a service-account JSON
    naming ``gcs_base_url``; ``disable_oauth`` makes it send no token. It holds no secret."""
    return json.dumps({"gcs_base_url": host, "disable_oauth": True, "client_email": "", "private_key": "", "private_key_id": ""})


def adc_file(credentials_file: str | None, gcloud_config: str | None) -> str | None:
    """The ADC file in use, if any: ``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's well-known file
    (under ``CLOUDSDK_CONFIG``, default ``~/.config/gcloud``)."""
    if credentials_file:
        return credentials_file
    config = gcloud_config or str(Path.home() / ".config" / "gcloud")
    well_known = Path(config) / "application_default_credentials.json"
    return str(well_known) if well_known.exists() else None


# --- gcsfs ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _filesystem_class():
    import gcsfs

    class ReadaheadGCSFileSystem(gcsfs.GCSFileSystem):
        """gcsfs reading with fsspec's plain "readahead" cache unless a caller names another.

        gcsfs 2026.10 defaults to "adaptive" (AdaptiveReadaheadCache with a background prefetcher,
        fsspec/filesystem_spec#2093, #2090), tuned for long sequential reads. For NetCDF headers and
        sampled chunks it is the wrong trade: its prefetcher turns xarray's open of a small file into
        many small requests where "readahead" makes a few (bench/HISTORY.md).
        """

        def _open(self, path, mode="rb", **kwargs):
            if "r" in mode and kwargs.get("cache_type") is None:
                kwargs["cache_type"] = "readahead"
            return super()._open(path, mode=mode, **kwargs)

    return ReadaheadGCSFileSystem


@lru_cache(maxsize=8)
def _filesystem(endpoint: str | None, token):
    cls = _filesystem_class()
    # No listings cache: the sensor must see a fresh listing every tick, and the "source changed
    # while virtualizing" check must compare against the object's generation now, not a cached one.
    if endpoint:
        return cls(endpoint_url=endpoint, token="anon", use_listings_cache=False)
    # token=None: gcsfs tries ADC, then the gcloud cache, then the metadata server, then anonymous.
    return cls(token=token, use_listings_cache=False)


def gcs_filesystem(access: GcsAccess, credentials=None):
    """gcsfs for listing and small files; `credentials` (google.auth) come from `GCSResource`."""
    host = access.emulator_host
    return _filesystem(host, None if host else credentials)


_clients: dict[str, object] = {}


def client_of(resource, access: GcsAccess):
    """google-cloud-storage client of a dagster-gcp `GCSResource`, built once per configuration
    and process; None when it cannot be built (no credentials, or credentials but no project):
    the clients then find credentials themselves or read anonymously, as they would on their own."""
    if resource is None or access.emulator_host:
        return None
    key = f"{type(resource).__qualname__}:{resource!r}"
    if key not in _clients:
        from google.auth.exceptions import DefaultCredentialsError

        try:
            _clients[key] = resource.get_client()
        except (DefaultCredentialsError, OSError):
            _clients[key] = None
    return _clients[key]


def filesystem_for(resource, access: GcsAccess):
    """gcsfs acting as `resource`'s principal (see `client_of`)."""
    client = client_of(resource, access)
    return filesystem_for_client(client, access) if client is not None else gcs_filesystem(access)


# --- google-cloud-storage (dagster-gcp GCSResource) -----------------------------------------------


def filesystem_for_client(client, access: GcsAccess):
    """gcsfs with the identity of a google-cloud-storage client, so both act as one principal."""
    if access.emulator_host or getattr(client, "_credentials", None) is None:
        return gcs_filesystem(access)
    from google.auth.credentials import AnonymousCredentials

    credentials = client._credentials  # noqa: SLF001 - the client's public ctor took them; no getter exists
    return gcs_filesystem(access, "anon" if isinstance(credentials, AnonymousCredentials) else credentials)


# --- obstore (VirtualiZarr) ------------------------------------------------------------------------


def obstore_gcs_store(access: GcsAccess, bucket: str, prefix: str = "", resource=None):
    """An obstore GCSStore for reading source files: as `resource`'s principal when it has one,
    else anonymous unless credentials are found."""
    from obstore.store import GCSStore

    host = access.emulator_host
    if host:
        return GCSStore(bucket, prefix=prefix or None, service_account_key=emulator_service_account_key(host))
    client = client_of(resource, access)
    credentials = getattr(client, "_credentials", None)  # noqa: SLF001 - see filesystem_for_client
    if credentials is not None:
        from google.auth.credentials import AnonymousCredentials

        if isinstance(credentials, AnonymousCredentials):
            return GCSStore(bucket, prefix=prefix or None, skip_signature=True)
        from obstore.auth.google import GoogleCredentialProvider

        return GCSStore(bucket, prefix=prefix or None, credential_provider=GoogleCredentialProvider(credentials=credentials))
    if access.credentials_file is None:
        return GCSStore(bucket, prefix=prefix or None, skip_signature=True)
    return GCSStore(bucket, prefix=prefix or None)


# --- Icechunk ------------------------------------------------------------------------------------


def icechunk_gcs_storage(access: GcsAccess, bucket: str, prefix: str):
    """The repository's storage. Writes need credentials: ADC (``from_env``) in production."""
    import icechunk

    host = access.emulator_host
    if host:
        return icechunk.gcs_storage(bucket=bucket, prefix=prefix, service_account_key=emulator_service_account_key(host))
    return icechunk.gcs_storage(bucket=bucket, prefix=prefix, from_env=True)


def icechunk_gcs_container(source):
    """The virtual-chunk container for `source` (a `Location`): its url_prefix must be exactly the
    prefix the virtual refs start with and the credentials are keyed by (`Location.prefix_url`).
    The container holds no credentials or endpoint: readers authorise it, see `icechunk_gcs_credentials`."""
    import icechunk

    return icechunk.VirtualChunkContainer(source.prefix_url, icechunk.gcs_store())


def icechunk_gcs_credentials(access: GcsAccess):
    """How this process reads virtual chunks: the emulator, ADC when present, else anonymously
    (the public ISMIP6 bucket needs nothing more; readers of the store do the same)."""
    import icechunk

    host = access.emulator_host
    if host:
        return icechunk.gcs_credentials(service_account_key=emulator_service_account_key(host))
    if access.credentials_file is not None:
        return icechunk.gcs_credentials(from_env=True)
    return icechunk.gcs_credentials(anonymous=True)
