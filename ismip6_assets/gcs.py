"""Google Cloud Storage clients, all switched to an emulator by ``STORAGE_EMULATOR_HOST``.

Credentials: Application Default Credentials or ``GOOGLE_APPLICATION_CREDENTIALS`` for writes;
the public source bucket is read anonymously when no credentials are found.
"""

from __future__ import annotations

import json
import os
import tempfile

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def emulator_host() -> str | None:
    host = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def gcs_filesystem():
    import gcsfs

    host = emulator_host()
    if host:
        return gcsfs.GCSFileSystem(endpoint_url=host, token="anon", skip_instance_cache=True)
    return gcsfs.GCSFileSystem(token=None)


def emulator_service_account_file() -> str:
    """object_store reaches an emulator only through a service-account JSON with ``gcs_base_url``."""
    host = emulator_host()
    path = os.path.join(tempfile.gettempdir(), f"ismip6-emulator-{abs(hash(host))}.json")
    if not os.path.exists(path):
        with open(path, "w") as f:
            json.dump(
                {"gcs_base_url": host, "disable_oauth": True, "client_email": "", "private_key": "", "private_key_id": ""},
                f,
            )
    return path


def obstore_gcs_store(bucket: str, prefix: str = ""):
    from obstore.store import GCSStore

    if emulator_host():
        return GCSStore(bucket, prefix=prefix or None, service_account_path=emulator_service_account_file())
    return GCSStore(bucket, prefix=prefix or None)


def _emulator_options() -> dict:
    host = emulator_host()
    return {"gcs_base_url": host, "service_account_path": emulator_service_account_file()} if host else {}


def icechunk_gcs_storage(bucket: str, prefix: str):
    import icechunk

    if emulator_host():
        return icechunk.gcs_storage(bucket=bucket, prefix=prefix, service_account_file=emulator_service_account_file())
    return icechunk.gcs_storage(bucket=bucket, prefix=prefix, from_env=True)


def icechunk_gcs_container(source):
    import icechunk

    host = emulator_host()
    opts = {"gcs_base_url": host} if host else {}
    return icechunk.VirtualChunkContainer(f"gs://{source.bucket}/", icechunk.gcs_store(opts=opts or None))


def icechunk_gcs_credentials():
    import icechunk

    if emulator_host():
        return icechunk.gcs_credentials(service_account_file=emulator_service_account_file())
    return icechunk.gcs_credentials(anonymous=True)
