"""Credentials never reach logs, run or asset metadata, failure records, commits or shown exceptions."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ismip6_assets.core.redact import redact
from ismip6_assets.core.virtualize import one_line

PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEFAKEKEYMATERIALxq9Zs1\n-----END PRIVATE KEY-----\n"
KEY_ID = "fakekeyid0123456789abcdef"
TOKEN = "ya29.FAKE-ACCESS-TOKEN-4f9a1c"
SIGNATURE = "deadbeefFAKESIGNATURE42"
SECRETS = ["MIIEFAKEKEYMATERIALxq9Zs1", KEY_ID, TOKEN, SIGNATURE]


@pytest.mark.parametrize(
    "text",
    [
        f"error talking to GCS with Authorization: Bearer {TOKEN}",
        f"GET https://storage.googleapis.com/ismip6/x.nc?X-Goog-Signature={SIGNATURE}&X-Goog-Expires=60 failed",
        json.dumps({"type": "service_account", "private_key_id": KEY_ID, "private_key": PRIVATE_KEY}),
        f"token {TOKEN} expired",
    ],
)
def test_redact_removes_each_kind_of_secret(text):
    cleaned = redact(text)
    assert not [s for s in SECRETS if s in cleaned], cleaned
    assert "[REDACTED" in cleaned


def test_failure_reasons_are_redacted():
    exc = PermissionError(f"403 for https://x/ismip6/a.nc?X-Goog-Signature={SIGNATURE} with Bearer {TOKEN}")
    reason = one_line(exc)
    assert SIGNATURE not in reason and TOKEN not in reason and reason.startswith("PermissionError")


def all_bytes_under(root: Path):
    for path in root.rglob("*"):
        if path.is_file():
            yield path, path.read_bytes()


@pytest.mark.slow
def test_a_run_with_fake_credentials_leaves_them_nowhere(archive_dir, store_dir, tmp_path):
    creds = tmp_path / "service-account.json"
    creds.write_text(json.dumps({"type": "service_account", "project_id": "p", "private_key_id": KEY_ID, "private_key": PRIVATE_KEY, "client_email": "x@p.iam.gserviceaccount.com"}))
    (archive_dir / "Projection-AIS/AWI/PISM1/exp05/orog_AIS_AWI_PISM1_exp05.nc").write_bytes(b"garbage, not NetCDF")
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "GOOGLE_APPLICATION_CREDENTIALS": str(creds), "GOOGLE_OAUTH_ACCESS_TOKEN": TOKEN}
    ismip6 = str(Path(sys.executable).with_name("ismip6"))
    proc = subprocess.run([ismip6, "run", "--source", str(archive_dir), "--store", str(store_dir)], env=env, capture_output=True, text=True, timeout=300)
    assert "failures=1" in proc.stdout, proc.stdout + proc.stderr  # the failure path really ran

    leaks = []
    for label, blob in [("stdout", proc.stdout.encode()), ("stderr", proc.stderr.encode())]:
        leaks += [(label, s) for s in SECRETS if s.encode() in blob]
    for root in (store_dir, home):
        for path, blob in all_bytes_under(root):
            for secret in SECRETS:
                if secret.encode() in blob or base64.b64encode(secret.encode()) in blob:
                    leaks.append((str(path), secret))
    assert not leaks
    assert any(home.rglob("*.db")), "the run must have written Dagster's event log to grep"
