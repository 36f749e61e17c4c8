"""The checked-in skip list: files the pipeline must not virtualize, each pinned to what it skips.

One entry a line: ``PATTERN PIN  # why``. ``PATTERN`` is a URL substring (a file's path under
``Projection-AIS/``, or a folder ending in ``/``); ``PIN`` says which bytes the entry was written for:

- ``size=N``: the file while it is N bytes long (``size=0`` for an empty file);
- ``fingerprint=F``: the file while its fingerprint is F, as the index shows it (``generation:…``,
  ``etag:…``, ``mtime:…:size:…``);
- ``before=YYYY-MM-DD``: files last modified before that day (for a folder: every file delivered then).

A file the pattern names but whose pin no longer holds (it was re-delivered) is virtualized like any
other, and the reconciliation reports the entry as stale (WARN) so someone removes it: a path skipped
forever would keep a good file out of the store with nothing saying so. An entry without a pin, or
with a pin that does not parse, is refused naming the file and line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from ismip6_assets.core.locations import ConfigError

SKIP_LIST_SETTING = "ISMIP6_SKIP_LIST"

DEFAULT_SKIP_LIST = Path(__file__).with_name("skip_list.txt")
PIN_KINDS = ("size", "fingerprint", "before")


@dataclass(frozen=True)
class SkipEntry:
    pattern: str
    kind: str  # one of PIN_KINDS
    value: str

    @property
    def text(self) -> str:
        return f"{self.pattern} {self.kind}={self.value}"

    def holds(self, size: int, fingerprint: str, modified: dt.datetime | None) -> bool:
        """Is the file still the one this entry was written for?"""
        if self.kind == "size":
            return size == int(self.value)
        if self.kind == "fingerprint":
            return fingerprint == self.value
        return modified is not None and modified < dt.datetime.fromisoformat(self.value).replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class SkipMatch:
    """The entry naming a file, and whether it still skips it (False: the entry is stale)."""

    entry: SkipEntry
    skips: bool


def _parse_entry(line: str, where: str) -> SkipEntry:
    parts = line.split()
    if len(parts) != 2 or "=" not in parts[1]:
        raise ConfigError(f"{where}: {line!r}: give PATTERN and one pin (size=N, fingerprint=F or before=YYYY-MM-DD)")
    kind, _, value = parts[1].partition("=")
    if kind not in PIN_KINDS or not value:
        raise ConfigError(f"{where}: {line!r}: unknown pin {parts[1]!r} (size=N, fingerprint=F or before=YYYY-MM-DD)")
    try:
        int(value) if kind == "size" else dt.date.fromisoformat(value) if kind == "before" else None
    except ValueError:
        raise ConfigError(f"{where}: {line!r}: {kind}={value!r} is not a {'byte count' if kind == 'size' else 'date YYYY-MM-DD'}") from None
    return SkipEntry(parts[0], kind, value)


@dataclass(frozen=True)
class SkipList:
    entries: tuple[SkipEntry, ...] = ()

    @classmethod
    def from_text(cls, text: str, name: str = "skip list") -> SkipList:
        entries = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if line:
                entries.append(_parse_entry(line, f"{name} line {number}"))
        return cls(tuple(entries))

    @classmethod
    def from_file(cls, path: str | Path, setting: str = SKIP_LIST_SETTING) -> SkipList:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{setting}={path}: cannot read it ({exc.strerror})") from None
        return cls.from_text(text, str(path))

    @classmethod
    def default(cls, path: str | Path | None = None) -> SkipList:
        """The file given (settings: ``ISMIP6_SKIP_LIST``), else the packaged `skip_list.txt`."""
        return cls.from_file(path or DEFAULT_SKIP_LIST)

    def match(self, url: str, size: int, fingerprint: str, modified: dt.datetime | None) -> SkipMatch | None:
        """The first entry whose pattern names ``url``; None when no entry does."""
        for entry in self.entries:
            if entry.pattern in url:
                return SkipMatch(entry, entry.holds(size, fingerprint, modified))
        return None


def modified_of(info: dict) -> dt.datetime | None:
    """When a listed object was last written: ``mtime`` (local, epoch seconds) or ``updated`` (GCS, ISO)."""
    value = info.get("mtime") or info.get("updated") or info.get("LastModified")
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None
