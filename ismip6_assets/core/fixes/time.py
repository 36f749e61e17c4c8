"""Normalize the time coordinate to ``days since 2000-01-01`` / ``proleptic_gregorian``.

The store keeps each step's calendar date (Y-M-D h:m:s) rather than its elapsed duration, so a
365_day year-start decodes to Jan 1 with plain ``xr.open_zarr``, like the source does with cftime.
How each broken encoding of the archive is read lives in `time_units`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import xarray as xr

from ismip6_assets.core.fixes import FixReport
from ismip6_assets.core.fixes.time_units import TimeDecoding, UndecodableTime, time_decoding

TARGET_UNITS = "days since 2000-01-01"
TARGET_CALENDAR = "proleptic_gregorian"
SOURCE_UNITS_ATTR = "ismip6_source_time_units"
SOURCE_CALENDAR_ATTR = "ismip6_source_calendar"
# On a time whose values are not dates, why; `borrowed_time.borrow_time_axes` removes it.
UNDECODABLE_ATTR = "ismip6_time_undecodable"
_EPOCH = dt.datetime(2000, 1, 1)
# Attributes that make xarray decode a variable as time; moved aside when the values are not dates.
_CF_TIME_ATTRS = {"units": SOURCE_UNITS_ATTR, "unit": SOURCE_UNITS_ATTR, "calendar": SOURCE_CALENDAR_ATTR}


def days_since_2000(dates) -> np.ndarray:
    """Days since 2000-01-01 of calendar dates, keeping each date's Y-M-D (clamping day to month end)."""
    out = np.empty(len(dates), dtype="float64")
    for i, d in enumerate(dates):
        day = d.day
        while True:  # 360_day has Feb 30: clamp to the month's last real day
            try:
                real = dt.datetime(d.year, d.month, day, d.hour, d.minute, d.second, getattr(d, "microsecond", 0))
                break
            except ValueError:
                day -= 1
        out[i] = (real - _EPOCH) / dt.timedelta(days=1)
    return out


class NormalizeTime:
    """Re-encode ``time`` (and its bounds) on the common epoch and calendar.

    Values that are not dates are left exactly as in the source, with their CF units moved to
    ``ismip6_source_time_units`` (so ``decode_times=True`` neither fails nor invents dates), and
    marked with the reason in ``ismip6_time_undecodable``: such a time is never stored as is, the
    partition's other files lend it their axis or the file is recorded as failed
    (`fixes/borrowed_time.py`, applied where a partition's files are virtualized together).
    """

    def __init__(self, name: str = "time") -> None:
        self.name = name

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        if self.name not in ds.variables or ds[self.name].ndim != 1:
            return ds
        time = ds[self.name]
        attrs = dict(time.attrs)
        values = np.asarray(time.values, dtype="float64")
        try:
            decoding = time_decoding(values, attrs)
        except UndecodableTime as exc:
            return self._mark_undecodable(ds, report, str(exc))
        except (ValueError, OverflowError) as exc:  # cftime's refusal of a units/calendar pair
            return self._mark_undecodable(ds, report, f"time units {attrs.get('units')!r} cannot be decoded ({exc})")
        bounds = attrs.get("bounds")
        for quirk in decoding.quirks:
            report.quirk(quirk)
        new_attrs = {k: v for k, v in attrs.items() if k not in _CF_TIME_ATTRS}
        new_attrs.update(units=TARGET_UNITS, calendar=TARGET_CALENDAR)
        # A fix of `time_encodings` that rewrote the units already recorded the ones written.
        new_attrs.setdefault(SOURCE_UNITS_ATTR, str(attrs.get("units", attrs.get("unit", ""))))
        new_attrs.setdefault(SOURCE_CALENDAR_ATTR, str(attrs.get("calendar", "")))
        ds = ds.assign_coords({self.name: (time.dims, days_since_2000(decoding.dates(values)), new_attrs)})
        ds[self.name].encoding = {}
        if bounds and bounds in ds.variables:
            ds = self._bounds(ds, bounds, decoding, report)
        if (attrs.get("units"), attrs.get("calendar")) != (TARGET_UNITS, TARGET_CALENDAR):
            report.quirk("time_reencoded")
        return ds

    @staticmethod
    def _bounds(ds: xr.Dataset, name: str, decoding: TimeDecoding, report: FixReport) -> xr.Dataset:
        b = ds[name]
        attrs = {k: v for k, v in b.attrs.items() if k not in _CF_TIME_ATTRS}
        try:
            flat = days_since_2000(decoding.dates(np.asarray(b.values, dtype="float64").ravel()))
        except (ValueError, OverflowError) as exc:
            # xarray decodes bounds with their parent's units: stale numbers would decode wrong.
            report.warnings.append(f"time bounds {name!r} dropped: {exc}")
            return ds.drop_vars(name)
        ds[name] = (b.dims, flat.reshape(b.shape), attrs)
        ds[name].encoding = {}
        return ds

    def _mark_undecodable(self, ds: xr.Dataset, report: FixReport, reason: str) -> xr.Dataset:
        names = [self.name] + [n for n in [ds[self.name].attrs.get("bounds")] if n and n in ds.variables]
        for name in names:
            var = ds[name]
            attrs = {_CF_TIME_ATTRS.get(k, k): v for k, v in var.attrs.items()}
            replacement = {name: (var.dims, var.values, attrs)}
            ds = ds.assign_coords(replacement) if name in ds.coords else ds.assign(replacement)
            ds[name].encoding = {k: v for k, v in var.encoding.items() if k in ("dtype", "_FillValue")}
        ds[self.name].attrs[UNDECODABLE_ATTR] = reason
        report.quirk("garbage_time")
        return ds
