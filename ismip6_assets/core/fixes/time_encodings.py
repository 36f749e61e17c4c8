"""Time encodings cftime cannot read as written, rewritten as CF ``days since`` before `NormalizeTime`.

Each fix recognises one encoding the real archive holds, converts the values (and the time
bounds') to days since an epoch in the calendar the modelling group meant, and leaves the decoding
to `NormalizeTime`, which then stores calendar dates as for any other file. The units and calendar
as written stay in ``ismip6_source_time_units`` / ``ismip6_source_calendar``. A series a fix cannot
place inside `PLAUSIBLE_YEARS` is left as written: `NormalizeTime` refuses it, and the partition's
other files may lend it their axis (`fixes/borrowed_time.py`).
"""

from __future__ import annotations

import math

import cftime
import numpy as np
import xarray as xr

from ismip6_assets.core.fixes import FixReport
from ismip6_assets.core.fixes.time import SOURCE_CALENDAR_ATTR, SOURCE_UNITS_ATTR
from ismip6_assets.core.fixes.time_units import _PACKED, _SINCE, DEFAULT_CALENDAR, FIRST_PACKED_DATE, PLAUSIBLE_YEARS, repair_epoch

# Epochs a run's day offsets may count from, in the order they are tried: projections, then
# CMIP5-forced runs from 2006, then historical spin-ups from 1950.
OFFSET_EPOCHS = ("2015-01-01", "2006-01-01", "1950-01-01")
_YEAR_UNITS = {"year", "years", "yr", "yrs"}


def _time_and_bounds(ds: xr.Dataset, name: str) -> list[str]:
    bounds = ds[name].attrs.get("bounds")
    return [name] + ([bounds] if bounds and bounds in ds.variables else [])


def _values(ds: xr.Dataset, name: str) -> np.ndarray | None:
    """The 1-D time values, or None when there is no such axis or a value is not finite."""
    if name not in ds.variables or ds[name].ndim != 1:
        return None
    values = np.asarray(ds[name].values, dtype="float64")
    return values if values.size and np.all(np.isfinite(values)) else None


def _in_plausible_years(dates) -> bool:
    return all(PLAUSIBLE_YEARS[0] <= d.year <= PLAUSIBLE_YEARS[1] for d in dates)


def rewrite_time(ds: xr.Dataset, name: str, convert, units: str, calendar: str) -> xr.Dataset:
    """Replace ``name`` and its bounds by ``convert(values)`` in ``units``/``calendar``; keep what was written."""
    for var_name in _time_and_bounds(ds, name):
        var = ds[var_name]
        attrs = {k: v for k, v in var.attrs.items() if k not in ("units", "unit", "calendar")}
        if var_name == name:
            attrs.setdefault(SOURCE_UNITS_ATTR, str(var.attrs.get("units", var.attrs.get("unit", ""))))
            attrs.setdefault(SOURCE_CALENDAR_ATTR, str(var.attrs.get("calendar", "")))
        attrs.update(units=units, calendar=calendar)
        flat = np.asarray(var.values, dtype="float64").ravel()
        replacement = {var_name: (var.dims, np.asarray(convert(flat), dtype="float64").reshape(var.shape), attrs)}
        ds = ds.assign_coords(replacement) if var_name in ds.coords else ds.assign(replacement)
        ds[var_name].encoding = {}
    return ds


class PackedDayOffsets:
    """``day as %Y%m%d.%f`` on values that are day offsets, not packed dates.

    Real file: NCAR_CISM exp07 (``lithk_AIS_NCAR_CISM_exp07.nc`` and its siblings): units
    ``day as %Y%m%d.%f``, calendar ``proleptic_gregorian``, values 0, 365, 730, … (87 steps). Read as
    proleptic-Gregorian days the dates drift a day every leap year (…, 2016-12-31, …, 2034-12-27);
    the steps are 365-day years, so they count in ``365_day``. Values below 18500101 cannot be
    packed dates: they count days from the first of `OFFSET_EPOCHS` that puts every step inside
    `PLAUSIBLE_YEARS`, in ``365_day`` when every step is 365 days, else in the declared calendar.
    """

    def __init__(self, name: str = "time") -> None:
        self.name = name

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        values = _values(ds, self.name)
        if values is None or not _PACKED.match(str(ds[self.name].attrs.get("units", ""))):
            return ds
        if np.max(np.abs(values)) >= FIRST_PACKED_DATE:
            return ds  # packed dates proper: time_units decodes them
        steps = np.diff(values)
        declared = str(ds[self.name].attrs.get("calendar") or "").strip().lower() or DEFAULT_CALENDAR
        calendar = "365_day" if steps.size and np.all(steps == 365.0) else declared
        for epoch in OFFSET_EPOCHS:
            units = f"days since {epoch}"
            if _in_plausible_years(cftime.num2date(values, units, calendar)):
                report.quirk("time_packed_day_offsets")
                return rewrite_time(ds, self.name, lambda v: v, units, calendar)
        return ds


def _float_years_to_days(values: np.ndarray, units: str, calendar: str) -> np.ndarray:
    """Year Y + fraction f → the start of Y plus f of Y's length, as days in ``units``."""
    out = np.empty(values.shape, dtype="float64")
    for i, value in enumerate(values):
        year = math.floor(value)
        start = cftime.date2num(cftime.datetime(year, 1, 1, calendar=calendar), units, calendar)
        end = cftime.date2num(cftime.datetime(year + 1, 1, 1, calendar=calendar), units, calendar)
        out[i] = start + (value - year) * (end - start)
    return out


class FloatYears:
    """A time without units whose values are years (2015.0, 2016.0, …; 2015.5, … for a flux).

    Real files: unit-less float-year series, listed in issue 22 among the quirks the predecessor
    (englacial/ismip-indexing) met in the archive (the file is not named there); refused as days
    (steps under a month), they were stored raw. A series without units whose values all lie in
    `PLAUSIBLE_YEARS` and step at most one year counts years: the decoded date's calendar year is
    the number's integer part, the fraction a part of that year (in the declared calendar,
    ``365_day`` when none is).
    """

    def __init__(self, name: str = "time") -> None:
        self.name = name

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        values = _values(ds, self.name)
        attrs = ds[self.name].attrs if values is not None else {}
        if values is None or str(attrs.get("units", attrs.get("unit", "")) or "").strip():
            return ds
        first, last = PLAUSIBLE_YEARS
        if not (np.min(values) >= first and np.max(values) < last + 1):
            return ds
        if values.size > 1 and np.max(np.abs(np.diff(values))) > 1.0:
            return ds
        calendar = str(attrs.get("calendar") or "").strip().lower() or DEFAULT_CALENDAR
        units = f"days since {math.floor(np.min(values)):04d}-01-01"
        report.quirk("time_float_years")
        return rewrite_time(ds, self.name, lambda v: _float_years_to_days(v, units, calendar), units, calendar)


def _anniversary(epoch: cftime.datetime, years: int, calendar: str) -> cftime.datetime:
    day = epoch.day
    while True:  # Feb 29 (or 30) in a year that lacks it: the month's last day
        try:
            when = (epoch.year + years, epoch.month, day, epoch.hour, epoch.minute, epoch.second)
            return cftime.datetime(*when, calendar=calendar)
        except ValueError:
            day -= 1


def _years_since_to_days(values: np.ndarray, epoch: cftime.datetime, units: str, calendar: str) -> np.ndarray:
    """``n + f`` years since the epoch → the n-th anniversary plus f of the year after it, as days."""
    out = np.empty(values.shape, dtype="float64")
    for i, value in enumerate(values):
        whole = math.floor(value)
        start = cftime.date2num(_anniversary(epoch, whole, calendar), units, calendar)
        end = cftime.date2num(_anniversary(epoch, whole + 1, calendar), units, calendar)
        out[i] = start + (value - whole) * (end - start)
    return out


class YearsSince:
    """``years since <date>``, which cftime refuses for every calendar but ``360_day``.

    Real files: ``years since 2015-01-01`` series (calendar ``365_day``, or ``gregorian``), values
    0, 1, 2, …, listed in issue 22 among the quirks the predecessor (englacial/ismip-indexing) met
    (the file is not named there); they were stored raw. Whole years are anniversaries of the epoch
    in the declared calendar (a leap year is 366 days in ``gregorian``), a fraction is that part of
    the year that follows; converted to days since the epoch before cftime sees them.
    """

    def __init__(self, name: str = "time") -> None:
        self.name = name

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        values = _values(ds, self.name)
        if values is None:
            return ds
        attrs = ds[self.name].attrs
        match = _SINCE.match(str(attrs.get("units", attrs.get("unit", "")) or ""))
        span = PLAUSIBLE_YEARS[1] - PLAUSIBLE_YEARS[0]
        if not match or match["unit"].lower() not in _YEAR_UNITS or np.max(np.abs(values)) > span:
            return ds
        calendar = str(attrs.get("calendar") or "").strip().lower() or DEFAULT_CALENDAR
        epoch_text, quirks = repair_epoch(match["epoch"])
        units = f"days since {epoch_text}"
        try:
            epoch = cftime.num2date(0.0, units, calendar)
        except ValueError:
            return ds  # an epoch cftime cannot read: NormalizeTime refuses the series with cftime's reason
        for quirk in [*quirks, "time_years_since"]:
            report.quirk(quirk)
        return rewrite_time(ds, self.name, lambda v: _years_since_to_days(v, epoch, units, calendar), units, calendar)
