"""Data fixes applied to each virtual dataset before it is stored.

A fix follows the same small protocol as VirtualiZarr's parsers: configured in ``__init__``, does
its work in ``__call__(ds, report) -> ds``, and notes what it changed in the `FixReport`. The order
in `default_fixes` matters only where one fix relies on names another one normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import xarray as xr


@dataclass
class FixReport:
    """What the fixes did to one file: quirk names for metadata, warnings for humans."""

    quirks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def quirk(self, name: str) -> None:
        if name not in self.quirks:
            self.quirks.append(name)


class Fix(Protocol):
    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset: ...


def default_fixes() -> list[Fix]:
    from ismip6_assets.fixes.time import NormalizeTime

    return [NormalizeTime()]


def apply_fixes(ds: xr.Dataset, fixes: list[Fix] | None = None) -> tuple[xr.Dataset, FixReport]:
    report = FixReport()
    for fix in default_fixes() if fixes is None else fixes:
        ds = fix(ds, report)
    return ds, report
