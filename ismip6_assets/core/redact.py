"""Keep secrets out of logs, metadata, failure records and commit messages."""

from __future__ import annotations

import re

_PATTERNS = [
    # private keys in service-account JSON
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), "[REDACTED KEY]"),
    (re.compile(r'("private_key(?:_id)?"\s*:\s*")[^"]*(")'), r"\1[REDACTED]\2"),
    # OAuth bearer tokens and signed-URL query strings
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)([?&](?:X-Goog-Signature|X-Goog-Credential|access_token|token|sig)=)[^&\s'\"]+"), r"\1[REDACTED]"),
    (re.compile(r"ya29\.[A-Za-z0-9._-]+"), "[REDACTED TOKEN]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
