"""Garbage time takes the axis of the partition's other files, or the file fails: never stored raw.

Real files: CPOM_BISICLES's scalars (``lim_AIS_CPOM_BISICLES_*.nc``, ``limnsw_…``) hold
uninitialised memory in ``time`` (2.31e-310, 1.71e+219, NaN, then day offsets without units) while
the same run's fields carry a good axis of the same length. Stored raw, such a group decoded to
nothing and the view left the variable out; the check said OK.

`NormalizeTime` marks a time it cannot decode (``ismip6_time_undecodable``, with the reason).
`borrow_time_axes` then looks at the partition's files virtualized together: a marked file takes
the decoded axis of the others with the same number of steps (those of its own ISMIP6 type, ST or
FL, first; the axis most of them share), with its time bounds, and says so in its attributes;
otherwise it is refused with the reason, and its caller records the file as failed. A plain
function on the virtualized files, not a `Fix`: a fix sees one file.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import xarray as xr

from ismip6_assets.core.fixes.time import SOURCE_CALENDAR_ATTR, SOURCE_UNITS_ATTR, TARGET_CALENDAR, TARGET_UNITS, UNDECODABLE_ATTR
from ismip6_assets.core.variables import variable_type

TIME = "time"
BORROWED_FROM_ATTR = "ismip6_time_borrowed_from"  # the source URL of the file whose axis the group holds
BORROWED_BECAUSE_ATTR = "ismip6_time_borrowed_because"  # why this file's own time was not used


def undecodable_reason(ds: xr.Dataset) -> str | None:
    """Why the dataset's time is not dates (as `NormalizeTime` found), or None."""
    return ds[TIME].attrs.get(UNDECODABLE_ATTR) if TIME in ds.variables else None


def _decoded_axis(ds: xr.Dataset) -> np.ndarray | None:
    if TIME not in ds.variables or ds[TIME].ndim != 1 or UNDECODABLE_ATTR in ds[TIME].attrs:
        return None
    attrs = ds[TIME].attrs
    if (attrs.get("units"), attrs.get("calendar")) != (TARGET_UNITS, TARGET_CALENDAR):
        return None
    return np.asarray(ds[TIME].values, dtype="float64")


def _lender(borrower: Any, files: list[Any]) -> tuple[Any | None, str]:
    """The file whose axis ``borrower`` takes, or None and why there is none."""
    steps = borrower.dataset.sizes[borrower.dataset[TIME].dims[0]]
    same_length = [f for f in files if (axis := _decoded_axis(f.dataset)) is not None and axis.size == steps]
    if not same_length:
        return None, f"no other file of the partition has a decodable {steps}-step time axis to borrow"
    kind = variable_type(borrower.variable)
    same_kind = [f for f in same_length if kind and variable_type(f.variable) == kind] or same_length
    counts = Counter(_decoded_axis(f.dataset).tobytes() for f in same_kind)
    (best, n), *rest = counts.most_common()
    if rest and rest[0][1] == n:
        return None, f"the partition's {steps}-step time axes disagree ({len(counts)} different ones)"
    return min((f for f in same_kind if _decoded_axis(f.dataset).tobytes() == best), key=lambda f: f.url), ""


def with_borrowed_time(ds: xr.Dataset, lender: xr.Dataset, lender_url: str, reason: str) -> xr.Dataset:
    """``ds`` with the time (and time bounds) of ``lender``, its own time's source attributes kept."""
    own = ds[TIME]
    stale = [n for n in [own.attrs.get("bounds")] if n and n in ds.variables]
    ds = ds.drop_vars(stale)
    attrs = dict(lender[TIME].attrs)
    attrs[SOURCE_UNITS_ATTR] = str(own.attrs.get(SOURCE_UNITS_ATTR, ""))
    attrs[SOURCE_CALENDAR_ATTR] = str(own.attrs.get(SOURCE_CALENDAR_ATTR, ""))
    bounds = attrs.get("bounds")
    ds = ds.assign_coords({TIME: (own.dims, np.asarray(lender[TIME].values, dtype="float64"), attrs)})
    ds[TIME].encoding = {}
    if bounds and bounds in lender.variables:
        b = lender[bounds]
        ds[bounds] = ((own.dims[0], *b.dims[1:]), np.asarray(b.values), dict(b.attrs))
        ds[bounds].encoding = {}
    elif bounds:
        del ds[TIME].attrs["bounds"]
    for name in ("year", "ismip6_model_years"):  # the model years the lender's time gives (fixes/model_years.py)
        if name in lender.coords:
            ds = ds.assign_coords({name: (own.dims[0], np.asarray(lender[name].values), dict(lender[name].attrs))})
    if "ismip6_model_years" in lender.attrs:
        ds.attrs["ismip6_model_years"] = lender.attrs["ismip6_model_years"]
    ds.attrs[BORROWED_FROM_ATTR] = lender_url
    ds.attrs[BORROWED_BECAUSE_ATTR] = reason
    return ds


def borrow_time_axes(files: list[Any]) -> dict[str, str]:
    """Give each file whose time is not dates the axis of the partition's other files.

    Parameters
    ----------
    files
        The partition's virtualized files (``url``, ``variable``, ``dataset``, ``quirks``,
        ``warnings``), virtualized together; a file that borrows gets its new dataset in place.

    Returns
    -------
    dict
        URL → reason of each file that cannot borrow: its time must not be stored.
    """
    refused = {}
    # Only a file's own decoded axis is lent: a borrowed one would name the wrong source.
    own_axes = [f for f in files if undecodable_reason(f.dataset) is None]
    for file in files:
        reason = undecodable_reason(file.dataset)
        if reason is None:
            continue
        lender, why_not = _lender(file, own_axes)
        if lender is None:
            refused[file.url] = f"time not decodable: {reason}; {why_not}"
            continue
        file.dataset = with_borrowed_time(file.dataset, lender.dataset, lender.url, reason)
        file.quirks.append("time_borrowed")
        file.warnings.append(f"time borrowed from {lender.url.rsplit('/', 1)[-1]}: {reason}")
    return refused
