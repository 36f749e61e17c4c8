"""The checked-in skip list: URL substrings of files the pipeline must not virtualize."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SKIP_LIST = Path(__file__).with_name("skip_list.txt")


@dataclass(frozen=True)
class SkipList:
    patterns: tuple[str, ...] = ()

    @classmethod
    def from_text(cls, text: str) -> SkipList:
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return cls(tuple(line for line in lines if line))

    @classmethod
    def default(cls) -> SkipList:
        """The file named by ``ISMIP6_SKIP_LIST``, else the packaged `skip_list.txt`."""
        path = Path(os.environ.get("ISMIP6_SKIP_LIST") or DEFAULT_SKIP_LIST)
        return cls.from_text(path.read_text())

    def matches(self, url: str) -> bool:
        return any(p in url for p in self.patterns)
