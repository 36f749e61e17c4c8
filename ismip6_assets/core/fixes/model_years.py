"""ISMIP6 model years: the year each time step stands for, in every variable group and in the views.

The rule (one place; views.py builds its axis with it, `ModelYears` writes it into each group):

- with time bounds, a step's year is the year of the bounds' midpoint;
- otherwise an ST (state) variable's step is the year that ends at its stamp (Jan 1 Y+1 and Dec 31 Y
  are both year Y: the snapshot that closes Y), any other variable's the year of its stamp (FL
  fluxes are stamped mid-year).

`ModelYears` gives each variable group the view's ``year`` coordinate and ``time_bnds`` ([Jan 1 Y,
Jan 1 Y+1], the ``bounds`` of ``time``), so ``sel(year=2014)`` picks the same step in a group as in
the view, while ``time`` keeps the file's own stamp (decoded to a date: the state at the end of 2014
is stamped 2015-01-01). A source bounds variable named ``time_bnds`` is replaced by these (its
midpoints gave the same years); bounds under another name stay as the file has them. The group's
``ismip6_model_years`` attribute is [first, last] of its years, for the catalog.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ismip6_assets.core.fixes import FixReport
from ismip6_assets.core.fixes.time import TARGET_CALENDAR, TARGET_UNITS
from ismip6_assets.core.variables import variable_type

YEAR = "year"
TIME_BOUNDS = "time_bnds"
BOUNDS_DIM = "bnds"
MODEL_YEARS_ATTR = "ismip6_model_years"  # group attribute: [first, last] model year of its steps
YEAR_ATTRS = {
    "long_name": "ISMIP6 model year",
    "comment": "ST (state) variables: the state at the end of the year; FL (flux) variables: the mean over the year",
}
_EPOCH = np.datetime64("2000-01-01T00:00:00", "s")


class NoModelYears(ValueError):
    """Why a time axis has no model years (one line a human reads)."""


def _dates(days) -> np.ndarray:
    return _EPOCH + np.round(np.asarray(days, dtype="float64") * 86400).astype("timedelta64[s]")


def _years_of(dates: np.ndarray) -> np.ndarray:
    return dates.astype("datetime64[Y]").astype("int64") + 1970


def step_years(variable: str, time: np.ndarray, time_attrs: dict, bounds: np.ndarray | None = None) -> np.ndarray:
    """The model year of each step of `variable`'s stored ``time`` (days since 2000-01-01,
    proleptic_gregorian, as fixes/time.py stores it) and optional bounds; raises `NoModelYears`."""
    if time_attrs.get("units") != TARGET_UNITS or time_attrs.get("calendar") != TARGET_CALENDAR:
        raise NoModelYears(f"time left undecoded (units {time_attrs.get('units', time_attrs.get('ismip6_source_time_units'))!r})")
    time = np.asarray(time, dtype="float64")
    if not np.all(np.isfinite(time)):
        raise NoModelYears("time has values that are not dates")
    if bounds is not None and bounds.shape == (len(time), 2) and np.all(np.isfinite(bounds)):
        return _years_of(_dates(np.asarray(bounds, dtype="float64").mean(axis=1)))
    if variable_type(variable) == "ST":
        return _years_of(_dates(time) - np.timedelta64(1, "D"))
    return _years_of(_dates(time))


def days_since_2000(years: np.ndarray, month: int) -> np.ndarray:
    """Day 1 of `month` in each year, as days since 2000-01-01 (proleptic_gregorian)."""
    stamps = np.array([f"{int(y):04d}-{month:02d}-01" for y in years], dtype="datetime64[D]")
    return (stamps - np.datetime64("2000-01-01", "D")).astype("float64")


def year_bounds(years: np.ndarray) -> np.ndarray:
    """[Jan 1 Y, Jan 1 Y+1] of each year, (n, 2), in days since 2000-01-01."""
    years = np.asarray(years, dtype="int64")
    return np.stack([days_since_2000(years, 1), days_since_2000(years + 1, 1)], axis=1)


class ModelYears:
    """Add ``year`` and ``time_bnds`` (model years) beside a decoded ``time``; leave any other time alone."""

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        if "time" not in ds.variables or ds["time"].ndim != 1 or YEAR in ds.variables:
            return ds
        time = ds["time"]
        variable = report.source.variable if report.source is not None else next(iter(ds.data_vars), "")
        bounds_name = time.attrs.get("bounds")
        bounds = np.asarray(ds[bounds_name].values) if bounds_name in ds.variables else None
        try:
            years = step_years(variable, time.values, time.attrs, bounds)
        except NoModelYears:  # time left undecoded: fixes/time.py already warned
            return ds
        if TIME_BOUNDS in ds.variables:
            ds = ds.drop_vars(TIME_BOUNDS)
        bounded = time.variable.copy(deep=False)
        bounded.attrs = {**time.attrs, "bounds": TIME_BOUNDS}
        ds = ds.assign_coords({
            "time": bounded,
            YEAR: ("time", years.astype("int32"), dict(YEAR_ATTRS)),
            TIME_BOUNDS: (("time", BOUNDS_DIM), year_bounds(years), {}),
        })
        if len(years):
            ds.attrs = {**ds.attrs, MODEL_YEARS_ATTR: [int(years.min()), int(years.max())]}
        return ds
