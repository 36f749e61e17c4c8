"""Read the time encodings of the ISMIP6 archive, broken ones included, as calendar dates.

`time_decoding` looks at a time variable's attributes and values once and returns a `TimeDecoding`
that turns those values (and the bounds') into dates, or raises `UndecodableTime` with a reason a
human reads. It never guesses a date it cannot justify: garbage values and unit-less series that
fit no rule are refused, so a file cannot silently land decades off.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import cftime
import numpy as np

DEFAULT_CALENDAR = "365_day"  # what ISMIP6 asked for; files without a calendar attribute meant it
PROJECTION_START = "2015-01-01"
# A series without units starting within this many days of 0 counts as offsets from 2015 (see `_unitless`).
FIRST_YEAR_DAYS = 366
# Decoded years outside this span are not ISMIP6 dates (historical runs from 1850, projections to 2100
# and their extensions): a series no rule puts inside it is refused (issue 22).
PLAUSIBLE_YEARS = (1850, 2200)
# Below the packed date 1850-01-01 a value cannot be a %Y%m%d date (`fixes/time_encodings.PackedDayOffsets`).
FIRST_PACKED_DATE = 18_500_101
_MAX_ABS_DAYS = 1e6  # ~2700 years: anything larger is garbage, and would overflow the date libraries

_SINCE = re.compile(r"^\s*(?P<unit>[A-Za-z_]+)\s+since\s+(?P<epoch>\S.*?)\s*$", re.IGNORECASE)
_EPOCH = re.compile(r"^(?P<a>\d{1,4})-(?P<b>\d{1,2})-(?P<c>\d{1,4})(?P<rest>.*)$")
_PACKED = re.compile(r"^\s*days?\s+as\s+%Y%m%d(\.%f)?\s*$", re.IGNORECASE)
_DAYS_PER_UNIT = {"second": 1 / 86400, "sec": 1 / 86400, "s": 1 / 86400, "minute": 1 / 1440, "min": 1 / 1440,
                  "hour": 1 / 24, "hr": 1 / 24, "h": 1 / 24, "day": 1.0, "d": 1.0, "month": 30.0, "year": 365.0}
_GREGORIAN_LABELS = ("gregorian", "standard")


class UndecodableTime(ValueError):
    """Time values that are not dates (NaN, Inf, 1e219, 2.31e-310, …); the message says which."""


class CalendarDate(NamedTuple):
    """A date as written, possibly invalid in the real calendar (Feb 30); `days_since_2000` clamps."""

    year: int
    month: int
    day: int
    hour: int = 0
    minute: int = 0
    second: int = 0
    microsecond: int = 0


@dataclass
class TimeDecoding:
    """How one file's time values map to dates; ``dates`` also serves the time bounds."""

    units: str
    calendar: str
    quirks: list[str] = field(default_factory=list)
    packed: bool = False
    # A mislabelled-gregorian series is decoded as 365_day steps from its first (gregorian) date.
    shift: float = 0.0

    def dates(self, values: np.ndarray) -> list:
        values = np.asarray(values, dtype="float64")
        # Packed dates are ~2e7 by design: their magnitude is judged by the decoded year instead.
        _refuse_garbage(values, None if self.packed else _days_per(self.units))
        if self.packed:
            return [_unpack(v) for v in values.ravel()]
        return list(cftime.num2date(values.ravel() - self.shift, self.units, self.calendar, only_use_cftime_datetimes=True))


def time_decoding(values: np.ndarray, attrs: dict) -> TimeDecoding:
    """The decoding of a 1-D time variable from its attributes and values.

    Parameters
    ----------
    values
        The raw (undecoded) time values.
    attrs
        The time variable's attributes as written (``units`` or the typo ``unit``, ``calendar``).

    Returns
    -------
    TimeDecoding
        Whose ``dates`` maps these values, and the bounds', to calendar dates in 1850–2200.

    Raises
    ------
    UndecodableTime
        For values that are not dates, and for unit-less series that fit no rule of `_unitless`.
    """
    values = np.asarray(values, dtype="float64")
    quirks = []
    units = attrs.get("units")
    if units is None and attrs.get("unit") is not None:
        units = attrs["unit"]
        quirks.append("time_unit_typo")
    calendar = str(attrs.get("calendar") or "").strip().lower()
    if not calendar:
        calendar = DEFAULT_CALENDAR
        quirks.append("time_calendar_missing")
    if values.size == 0:
        raise UndecodableTime("time has no values")
    units = str(units).strip() if units is not None and str(units).strip() else None
    if units is not None and _PACKED.match(units):
        decoding = _packed(values, calendar)
    elif units is None:
        decoding = _unitless(values, attrs.get("calendar"))
    else:
        decoding = _since(units, values, calendar)
    decoding.quirks = quirks + decoding.quirks
    _check_plausible(decoding.dates(values))
    return decoding


def _since(units: str, values: np.ndarray, calendar: str) -> TimeDecoding:
    match = _SINCE.match(units)
    if not match:
        raise UndecodableTime(f"time units {units!r} are not '<unit> since <date>'")
    epoch, quirks = repair_epoch(match["epoch"])
    decoding = TimeDecoding(f"{match['unit'].lower()} since {epoch}", calendar, quirks)
    _refuse_garbage(values, _days_per(decoding.units))
    steps = np.diff(values) * _days_per(decoding.units)
    if calendar in _GREGORIAN_LABELS and steps.size > 2 and np.all(steps == 365.0):
        first = decoding.dates(values[:1])[0]
        month_days = {(d.month, d.day) for d in decoding.dates(values)}
        if len(month_days) > 1:  # drifts across leap days in gregorian: the steps were 365_day years
            start = first.strftime("%Y-%m-%d %H:%M:%S")
            quirks = [*quirks, "time_gregorian_365_day_steps"]
            return TimeDecoding(f"days since {start}", DEFAULT_CALENDAR, quirks, shift=values[0])
    return decoding


def repair_epoch(epoch: str) -> tuple[str, list[str]]:
    """``1-1-2015`` (day-month-year) and day 0 (``2015-1-0``) → ``2015-01-01``; other epochs as given."""
    match = _EPOCH.match(epoch.strip())
    if not match:
        return epoch, []
    a, b, c, rest = match["a"], match["b"], match["c"], match["rest"]
    quirks = []
    if len(c) == 4 and len(a) <= 2:
        year, month, day = int(c), int(b), int(a)
        quirks.append("time_epoch_day_month_year")
    else:
        year, month, day = int(a), int(b), int(c)
    if day == 0:
        # The modelling groups meant the projection start, which decodes to Jan 1 (not Dec 31).
        day = 1
        quirks.append("time_epoch_day_zero")
    return f"{year:04d}-{month:02d}-{day:02d}{rest}", quirks


def _packed(values: np.ndarray, calendar: str) -> TimeDecoding:
    """``day as %Y%m%d.%f`` on packed dates; day offsets under these units were rewritten before
    (`time_encodings.PackedDayOffsets`), so a value below 18500101 left here fits no epoch."""
    _refuse_garbage(values, None)
    if np.min(values) < FIRST_PACKED_DATE:
        raise UndecodableTime(
            f"time units 'day as %Y%m%d.%f' on values from {np.min(values):g}: neither packed dates nor day offsets "
            f"that any epoch puts inside {PLAUSIBLE_YEARS[0]}–{PLAUSIBLE_YEARS[1]}"
        )
    return TimeDecoding("day as %Y%m%d.%f", calendar, ["time_packed_dates"], packed=True)


def _unpack(value: float) -> CalendarDate:
    whole = math.floor(value)
    seconds = round((value - whole) * 86400)
    year, month, day = whole // 10000, whole // 100 % 100, whole % 100
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1  # month 13 is January of the next year
    return CalendarDate(year, month, max(day, 1), seconds // 3600, seconds % 3600 // 60, seconds % 60)


def _unitless(values: np.ndarray, calendar_attr) -> TimeDecoding:
    """BISICLES writes days without units. The rule, chosen so it cannot land decades off:

    - a series whose first value lies within the first year (|v0| < 366) counts days from the
      projection start 2015-01-01 (``0, 365, 730, …`` → 2015, 2016, 2017);
    - any other series must already be days since 2000-01-01 (``5479, 5844`` → 2015, 2016; the
      upstream heuristic re-shifted these by 15 years to 2030), and its first value must land on
      Jan 1 or mid-year in 365_day or proleptic_gregorian, else the series is refused;
    - steps under a month are refused too: ``0, 1, 2, …`` may count years, and read as days they
      would end 85 years early.
    """
    _refuse_garbage(values, 1.0)
    if values.size > 1 and np.min(np.abs(np.diff(values))) < 28:
        raise UndecodableTime("time has no units and steps under a month: days or years cannot be told apart")
    if abs(values[0]) < FIRST_YEAR_DAYS:
        return TimeDecoding(f"days since {PROJECTION_START}", str(calendar_attr or DEFAULT_CALENDAR), ["time_units_missing"])
    calendars = [str(calendar_attr)] if calendar_attr else [DEFAULT_CALENDAR, "proleptic_gregorian"]
    for calendar in calendars:
        first = cftime.num2date(values[0], "days since 2000-01-01", calendar)
        if (first.month, first.day) in ((1, 1), (7, 1), (7, 2)):
            return TimeDecoding("days since 2000-01-01", calendar, ["time_units_missing"])
    raise UndecodableTime(
        f"time has no units and its first value {values[0]:g} is neither a day in 2015 nor a year start "
        "in days since 2000-01-01; left undecoded rather than guessed"
    )


def _days_per(units: str) -> float:
    unit = units.split()[0].lower()
    for name in (unit, unit.rstrip("s")):
        if name in _DAYS_PER_UNIT:
            return _DAYS_PER_UNIT[name]
    raise UndecodableTime(f"time unit {unit!r} is not a known duration")


def _refuse_garbage(values: np.ndarray, days_per_value: float | None) -> None:
    """Raise `UndecodableTime` for NaN, Inf, denormals (2.31e-310) and spans beyond `_MAX_ABS_DAYS`."""
    finite = np.isfinite(values)
    tiny = (values != 0) & (np.abs(np.where(finite, values, 1.0)) < np.finfo("float64").tiny)
    huge = np.abs(np.where(finite, values, 0.0)) * (days_per_value or 0.0) > _MAX_ABS_DAYS
    bad = ~finite | tiny | huge
    if bad.any():
        examples = ", ".join(f"{v:g}" for v in dict.fromkeys(values[bad].tolist()))
        raise UndecodableTime(f"time values are not dates ({int(bad.sum())} of {values.size}: {examples[:80]})")


def _check_plausible(dates: list) -> None:
    years = [d.year for d in dates]
    if years and not (PLAUSIBLE_YEARS[0] <= min(years) and max(years) <= PLAUSIBLE_YEARS[1]):
        raise UndecodableTime(f"time decodes to years {min(years)}–{max(years)}, outside any ISMIP6 run")
