"""Normalize the time coordinate to ``days since 2000-01-01`` / ``proleptic_gregorian``.

The store keeps each step's calendar date (Y-M-D h:m:s) rather than its elapsed duration, so a
365_day year-start decodes to Jan 1 with plain ``xr.open_zarr``, like the source does with cftime.
"""

from __future__ import annotations

import datetime as dt

import cftime
import numpy as np
import xarray as xr

from ismip6_assets.fixes import FixReport

TARGET_UNITS = "days since 2000-01-01"
TARGET_CALENDAR = "proleptic_gregorian"
_EPOCH = dt.datetime(2000, 1, 1)


def days_since_2000(dates) -> np.ndarray:
    """Days since 2000-01-01 of calendar dates, keeping each date's Y-M-D (clamping day to month end)."""
    out = np.empty(len(dates), dtype="float64")
    for i, d in enumerate(dates):
        day = d.day
        while True:  # 360_day has Feb 30: clamp to the month's last real day
            try:
                real = dt.datetime(d.year, d.month, day, d.hour, d.minute, d.second)
                break
            except ValueError:
                day -= 1
        out[i] = (real - _EPOCH) / dt.timedelta(days=1)
    return out


def decode(values: np.ndarray, units: str, calendar: str):
    return cftime.num2date(values, units, calendar, only_use_cftime_datetimes=True)


class NormalizeTime:
    """Re-encode ``time`` (and its bounds) on the common epoch and calendar."""

    def __init__(self, name: str = "time") -> None:
        self.name = name

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        if self.name not in ds.variables or ds[self.name].ndim != 1:
            return ds
        time = ds[self.name]
        attrs = dict(time.attrs)
        units = attrs.get("units")
        calendar = attrs.get("calendar", "standard")
        if not units or " since " not in units:
            report.warnings.append(f"time left as is: no CF units ({units!r})")
            return ds
        values = np.asarray(time.values, dtype="float64")
        if not np.all(np.isfinite(values)):
            report.warnings.append("time left as is: non-finite values")
            return ds
        dates = decode(values, units, calendar)
        new_attrs = {k: v for k, v in attrs.items() if k not in ("units", "calendar")}
        new_attrs.update(units=TARGET_UNITS, calendar=TARGET_CALENDAR, ismip6_source_time_units=units, ismip6_source_calendar=calendar)
        ds = ds.assign_coords({self.name: (time.dims, days_since_2000(dates), new_attrs)})
        ds[self.name].encoding = {}
        bounds = attrs.get("bounds")
        if bounds and bounds in ds.variables:
            b = ds[bounds]
            flat = days_since_2000(decode(np.asarray(b.values, dtype="float64").ravel(), units, calendar))
            ds[bounds] = (b.dims, flat.reshape(b.shape), {k: v for k, v in b.attrs.items() if k not in ("units", "calendar")})
            ds[bounds].encoding = {}
        if units != TARGET_UNITS or calendar != TARGET_CALENDAR:
            report.quirk("time_reencoded")
        return ds
