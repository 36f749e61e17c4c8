"""Data fixes applied to each virtual dataset before it is stored.

A fix follows the same small protocol as VirtualiZarr's parsers: configured in ``__init__``, does
its work in ``__call__(ds, report) -> ds``, and notes what it changed in the `FixReport`. The order
in `default_fixes` matters: the encodings cftime cannot read (`time_encodings`) are rewritten before
`NormalizeTime` decodes, km become metres before the grid fix judges x/y; the grid fix renames dims before the chunk split and the sentinel read,
and the sentinel read comes after the split so that it fetches one time step, not a whole file; the
CF metadata comes after the grid fix, which is what gives every grid its (y, x) dims; the model
years (``year``, ``time_bnds``) come last, from the decoded time and its bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import xarray as xr

# Dataset attribute a reader sees when the fixes left something undecoded on purpose.
WARNING_ATTR = "ismip6_warning"


@dataclass(frozen=True)
class SourceFile:
    """Where a virtual dataset came from, for fixes that must read a few source bytes.

    ``registry`` is the `obspec_utils` ObjectStoreRegistry the virtual references resolve through.
    """

    url: str
    variable: str
    registry: Any = None


@dataclass
class FixReport:
    """What the fixes did to one file: quirk names for metadata, warnings for humans."""

    quirks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: SourceFile | None = None

    def quirk(self, name: str) -> None:
        if name not in self.quirks:
            self.quirks.append(name)

    def warn(self, ds: xr.Dataset, quirk: str, message: str) -> None:
        """Record a warning in the report and on the dataset, where readers of the store see it."""
        self.quirk(quirk)
        self.warnings.append(message)
        previous = ds.attrs.get(WARNING_ATTR)
        ds.attrs[WARNING_ATTR] = f"{previous}; {message}" if previous else message


class Fix(Protocol):
    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset: ...


def default_fixes() -> list[Fix]:
    from ismip6_assets.core.fixes.cf import CFMetadata
    from ismip6_assets.core.fixes.chunks import SplitContiguousTime
    from ismip6_assets.core.fixes.grid import StandardGrid
    from ismip6_assets.core.fixes.grid_units import KilometreGrid
    from ismip6_assets.core.fixes.metadata import SentinelValue, VariableType
    from ismip6_assets.core.fixes.model_years import ModelYears
    from ismip6_assets.core.fixes.time import NormalizeTime
    from ismip6_assets.core.fixes.time_encodings import FloatYears, PackedDayOffsets, YearsSince

    return [
        *(PackedDayOffsets(), FloatYears(), YearsSince(), NormalizeTime()),
        *(KilometreGrid(), StandardGrid(), SplitContiguousTime(), VariableType(), CFMetadata(), SentinelValue(), ModelYears()),
    ]


def apply_fixes(ds: xr.Dataset, fixes: list[Fix] | None = None, source: SourceFile | None = None) -> tuple[xr.Dataset, FixReport]:
    """Run the fixes in order; ``source`` lets a fix read the first time slice through the virtual refs."""
    report = FixReport(source=source)
    for fix in default_fixes() if fixes is None else fixes:
        ds = fix(ds, report)
    return ds, report
