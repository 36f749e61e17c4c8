"""Real NetCDF files with each known quirk of the ISMIP6 archive: ``ismip6 sample-archive --quirks``.

One file per quirk, under partitions of their own so they never collide with the plain sample
archive. `QUIRK_FILES` maps each quirk's name to its path under ``Projection-AIS``; the tests read
the names from here and state the dates, grids and failures they expect on their own.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import xarray as xr

from ismip6_assets.core.sample_archive import grid

N_TIMES = 4
TIME_PARTITION = "VUW/PISM/exp01"  # broken time attributes
UNITLESS_PARTITION = "CPOM/BISICLES/expB1"  # no time units at all
PACKED_PARTITION = "IMAU/IMAUICE1/expC1"  # `day as %Y%m%d.%f`
GARBAGE_PARTITION = "VUB/AISMPALEO/expD1"  # time values that are not dates
GRID_PARTITION = "NCAR/CISM/exp05"  # x/y missing or duplicated
UCIJPL_PARTITION = "UCIJPL/ISSM/exp12"  # the same, in a file with an experiment-prefixed name
FORMATS_PARTITION = "LSCE/GRISLI2/hist_std"  # NetCDF3 flavours beside NetCDF4
CONTIGUOUS_PARTITION = "JPL1/ISSM/expB2"  # contiguous uncompressed 3-D arrays
BROKEN_PARTITION = "ULB/fETISh_32km/expA1"  # damaged files beside a good one
SENTINEL_PARTITION = "PIK/PISM1/expA2"  # literal ocean sentinels
SKIPPED_PARTITION = "NCAR/CISM/expD12"  # on the skip list: no usable data variables upstream
PACKED_OFFSETS_PARTITION = "NCAR/CISM/exp07"  # `day as %Y%m%d.%f` on 365-day offsets, as NCAR_CISM exp07
FLOAT_YEARS_PARTITION = "UTAS/ElmerIce/exp06"  # years as floats, no units
YEARS_SINCE_PARTITION = "LSCE/GRISLI/exp08"  # `years since 2015-01-01`
BISICLES_PARTITION = "CPOM/BISICLES/exp07"  # uninitialised scalar time beside fields with a good axis
KM_PARTITION = "IGE/ElmerIce/exp09"  # x/y in km


def _path(partition: str, variable: str, prefix: str = "") -> str:
    inst, model, exp = partition.split("/")
    token = {"fETISh_32km": "fETISh"}.get(model, model)
    return f"{partition}/{prefix}{variable}_AIS_{inst}_{token}_{exp}.nc"


def _field(
    variable: str, time, time_attrs: dict, n: int = 31, xy: str = "standard", ocean: float = np.nan, span=(100.0, 3000.0)
) -> xr.Dataset:
    """A field on an ``n``-point grid with ``ocean`` outside the ice sheet.

    ``xy``: ``standard`` x/y, ``missing`` (dims ``nx``/``ny``), ``duplicated`` values, ``shifted``
    (a correct regular grid 500 m off the standard one), ``km`` (the standard grid in km, units
    ``km``) or ``km_unitless`` (in km, no units).
    """
    rng = np.random.default_rng(len(variable) * 7919 + n)
    values = rng.uniform(*span, (len(time), n, n)).astype("float32")
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    values[:, np.hypot(xx, yy) > 0.9] = ocean
    dims = ("time", "ny", "nx") if xy == "missing" else ("time", "y", "x")
    coords = {"time": ("time", np.asarray(time, dtype="float64"), time_attrs)}
    axis = {
        "standard": grid(n), "duplicated": np.repeat(grid((n + 1) // 2), 2)[:n], "shifted": grid(n) + 500.0,
        "km": grid(n) / 1000, "km_unitless": grid(n) / 1000,
    }.get(xy)
    units = {"km": {"units": "km"}, "km_unitless": {}}.get(xy, {"units": "m"})
    if axis is not None:
        coords |= {"x": ("x", axis, units), "y": ("y", axis.copy(), dict(units))}
    return xr.Dataset({variable: (dims, values, {"units": "m"})}, coords=coords)


def _scalar(variable: str, time, time_attrs: dict) -> xr.Dataset:
    data = 2.6e19 + np.arange(len(time), dtype="float64") * 1e16
    time = ("time", np.asarray(time, dtype="float64"), time_attrs)
    return xr.Dataset({variable: ("time", data, {"units": "kg"})}, coords={"time": time})


def _write(ds: xr.Dataset, path: Path, fmt: str = "NETCDF4", contiguous: bool = False, unlimited: bool = False) -> None:
    encoding = {name: {"_FillValue": None} for name in ds.variables if name != next(iter(ds.data_vars))}
    if fmt == "NETCDF4":
        var = next(iter(ds.data_vars))
        encoding[var] = {"contiguous": True} if contiguous else {"zlib": True, "complevel": 1}
    ds.to_netcdf(path, format=fmt, engine="netcdf4", encoding=encoding, unlimited_dims=["time"] if unlimited else None)


YEARS = np.arange(N_TIMES) * 365.0
DAYS_365 = {"units": "days since 2015-01-01", "calendar": "365_day"}
SCALARS = {"lim", "limnsw", "iareagr", "iareafl"}
PACKED = "day as %Y%m%d.%f"
YEARS_SINCE = "years since 2015-01-01"


def _cf(units: str, calendar: str | None = "365_day") -> dict:
    return {"units": units} | ({"calendar": calendar} if calendar else {})


# quirk: (partition, variable, time values, time attributes)
TIME_QUIRKS = {
    # Epoch 2010, so that reading the file as unit-less (the typo ignored) would land in 2005.
    "time_unit_typo": (TIME_PARTITION, "lithk", YEARS + 1825, {"unit": "days since 2010-01-01", "calendar": "365_day"}),
    "time_epoch_day_month_year": (TIME_PARTITION, "orog", YEARS, _cf("days since 1-1-2015")),
    "time_epoch_day_zero": (TIME_PARTITION, "topg", YEARS, _cf("days since 2015-1-0")),
    "time_epoch_day_zero_padded": (TIME_PARTITION, "base", YEARS, _cf("days since 2015-01-00")),
    "time_calendar_missing": (TIME_PARTITION, "acabf", YEARS + 182.5, _cf("days since 2015-01-01", None)),
    "time_360_day_feb_30": (TIME_PARTITION, "sftgif", [0.0, 59.0, 360.0, 419.0], _cf("days since 2015-01-01", "360_day")),
    "time_seconds_since": (TIME_PARTITION, "xvelmean", YEARS * 86400, _cf("seconds since 2015-01-01 00:00:00")),
    "time_months_since": (TIME_PARTITION, "yvelmean", [0.0, 12.0, 18.0, 24.0], _cf("months since 2015-01-01", "360_day")),
    "time_gregorian_365_day_steps": (TIME_PARTITION, "strbasemag", YEARS + 365.0, _cf("days since 2015-01-01", "gregorian")),
    "time_units_missing_offsets": (UNITLESS_PARTITION, "lithk", YEARS, {}),
    "time_units_missing_days_since_2000": (UNITLESS_PARTITION, "orog", [5479.0, 5844.0], {}),
    "time_units_missing_ambiguous": (UNITLESS_PARTITION, "topg", [1000.0, 1365.0], {}),  # fits no rule: refused
    "time_packed_dates": (PACKED_PARTITION, "lithk", [20150101.0, 20160701.0, 20161301.0, 20170101.5], {"units": PACKED}),
    "time_packed_day_offsets": (PACKED_PARTITION, "orog", [0.0, 365.0, 31301.0], {"units": PACKED}),
    "time_garbage_nan": (GARBAGE_PARTITION, "lim", [0.0, np.nan, 730.0], DAYS_365),
    "time_garbage_huge": (GARBAGE_PARTITION, "limnsw", [0.0, 1e219, 730.0], DAYS_365),
    "time_garbage_denormal": (GARBAGE_PARTITION, "iareagr", [2.31e-310, 365.0, 730.0], DAYS_365),
    "time_garbage_inf": (GARBAGE_PARTITION, "iareafl", [0.0, 365.0, np.inf], DAYS_365),
    "time_garbage_partner": (GARBAGE_PARTITION, "lithk", YEARS[:3], DAYS_365),  # the axis the four above take
    # NCAR_CISM exp07: 365-day offsets under packed-date units and `proleptic_gregorian`.
    "time_packed_day_offsets_365_steps": (PACKED_OFFSETS_PARTITION, "lithk", YEARS, _cf(PACKED, "proleptic_gregorian")),
    "time_float_years": (FLOAT_YEARS_PARTITION, "lithk", 2015.0 + np.arange(N_TIMES), {}),
    "time_float_years_mid_year": (FLOAT_YEARS_PARTITION, "acabf", 2015.5 + np.arange(N_TIMES), {}),
    "time_years_since_365_day": (YEARS_SINCE_PARTITION, "lithk", YEARS / 365.0, _cf(YEARS_SINCE)),
    "time_years_since_gregorian": (YEARS_SINCE_PARTITION, "orog", [0.0, 1.0, 1.5, 2.0], _cf(YEARS_SINCE, "gregorian")),
    # CPOM_BISICLES: scalars whose time is uninitialised memory, then day offsets without units.
    "time_garbage_bisicles_lim": (BISICLES_PARTITION, "lim", [2.31e-310, 1.71e219, np.nan, 1095.0, 1460.0], {}),
    "time_garbage_bisicles_limnsw": (BISICLES_PARTITION, "limnsw", [2.31e-310, 1.71e219, np.nan, 1095.0, 1460.0], {}),
    "time_garbage_bisicles_partner": (BISICLES_PARTITION, "lithk", np.arange(5) * 365.0, {}),
    "time_garbage_no_partner": (BISICLES_PARTITION, "iareagr", [2.31e-310, np.nan, 730.0], {}),  # no 3-step axis: fails
}
# quirk: (partition, variable, grid size, x/y kind, file name prefix)
GRID_QUIRKS = {
    "grid_missing_xy": (GRID_PARTITION, "lithk", 191, "missing", ""),
    "grid_duplicated_xy": (GRID_PARTITION, "orog", 191, "duplicated", ""),
    "grid_missing_xy_snapped": (GRID_PARTITION, "topg", 192, "missing", ""),
    "grid_correct_xy": (GRID_PARTITION, "base", 191, "shifted", ""),
    "grid_missing_xy_ucijpl": (UCIJPL_PARTITION, "lithk", 191, "missing", "exp12"),  # contiguous, like all UCIJPL
    "grid_xy_km": (KM_PARTITION, "lithk", 191, "km", ""),
    "grid_xy_km_by_extent": (KM_PARTITION, "orog", 191, "km_unitless", ""),
}
# quirk: (partition, variable, file format, options of `_write`)
FORMAT_QUIRKS = {
    "netcdf3_classic": (FORMATS_PARTITION, "lithk", "NETCDF3_CLASSIC", {"unlimited": True}),
    "netcdf3_64bit_offset": (FORMATS_PARTITION, "orog", "NETCDF3_64BIT", {}),
    "netcdf3_cdf5": (FORMATS_PARTITION, "topg", "NETCDF3_64BIT_DATA", {}),
    "netcdf4_beside_netcdf3": (FORMATS_PARTITION, "acabf", "NETCDF4", {}),
    "contiguous_netcdf4": (CONTIGUOUS_PARTITION, "lithk", "NETCDF4", {"contiguous": True}),
    "contiguous_netcdf3": (CONTIGUOUS_PARTITION, "orog", "NETCDF3_CLASSIC", {}),
    "broken_good_neighbour": (BROKEN_PARTITION, "lithk", "NETCDF4", {}),
    "broken_truncated_hdf5": (BROKEN_PARTITION, "topg", "NETCDF4", {"keep": 0.5}),
    "broken_netcdf3_records_past_eof": (BROKEN_PARTITION, "acabf", "NETCDF3_CLASSIC", {"unlimited": True, "keep": 0.7}),
    "skipped_folder": (SKIPPED_PARTITION, "lithk", "NETCDF4", {"delivered": "2020-06-01"}),  # before the entry's pin
}
# quirk: (partition, variable, raw bytes) of files that are not NetCDF at all
RAW_QUIRKS = {
    "broken_zero_bytes": (BROKEN_PARTITION, "orog", b""),
    "broken_not_netcdf": (BROKEN_PARTITION, "base", b"<html><body>404 Not Found</body></html>\n"),
}
# quirk: (partition, variable, ocean value, data range, time offset)
SENTINEL_QUIRKS = {
    "sentinel_zero": (SENTINEL_PARTITION, "lithk", 0.0, (100.0, 3000.0), 0.0),
    "sentinel_1e20": (SENTINEL_PARTITION, "orog", 1e20, (100.0, 3000.0), 0.0),
    "sentinel_none": (SENTINEL_PARTITION, "topg", np.nan, (100.0, 3000.0), 0.0),
    "sentinel_inside_data_range": (SENTINEL_PARTITION, "acabf", 0.0, (-1.0, 1.0), 182.5),
}


def _time_file(variable: str, time, attrs: dict, path: Path) -> None:
    time = np.asarray(time, dtype="float64")
    _write(_scalar(variable, time, attrs) if variable in SCALARS else _field(variable, time, attrs), path)


def _grid_file(variable: str, n: int, xy: str, contiguous: bool, path: Path) -> None:
    _write(_field(variable, YEARS[:2], DAYS_365, n=n, xy=xy), path, contiguous=contiguous)


def _sentinel_file(variable: str, ocean: float, span: tuple[float, float], offset: float, path: Path) -> None:
    _write(_field(variable, YEARS[:3] + offset, DAYS_365, ocean=ocean, span=span), path)


def _format_file(variable: str, fmt: str, options: dict, path: Path) -> None:
    keep = options.pop("keep", None)
    delivered = options.pop("delivered", None)
    _write(_field(variable, YEARS, DAYS_365), path, fmt, **options)
    if keep is not None:  # cut the file short: the header still promises every byte
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    if delivered is not None:  # dated as delivered, for the skip list's `before=` pin
        stamp = dt.datetime.fromisoformat(delivered).replace(tzinfo=dt.UTC).timestamp()
        os.utime(path, (stamp, stamp))


def quirk_writers() -> dict[str, tuple[str, Callable[[Path], None]]]:
    """Quirk name → (path under ``Projection-AIS``, writer of that file)."""
    writers = {}
    for name, (partition, variable, time, attrs) in TIME_QUIRKS.items():
        writers[name] = (_path(partition, variable), partial(_time_file, variable, time, attrs))
    for name, (partition, variable, n, xy, prefix) in GRID_QUIRKS.items():
        writers[name] = (_path(partition, variable, prefix), partial(_grid_file, variable, n, xy, bool(prefix)))
    for name, (partition, variable, fmt, options) in FORMAT_QUIRKS.items():
        writers[name] = (_path(partition, variable), partial(_format_file, variable, fmt, dict(options)))
    for name, (partition, variable, raw) in RAW_QUIRKS.items():
        writers[name] = (_path(partition, variable), partial(Path.write_bytes, data=raw))
    for name, (partition, variable, ocean, span, offset) in SENTINEL_QUIRKS.items():
        writers[name] = (_path(partition, variable), partial(_sentinel_file, variable, ocean, span, offset))
    return writers


QUIRK_FILES = {name: relpath for name, (relpath, _) in quirk_writers().items()}


def write_quirk_archive(dest: str | Path) -> list[Path]:
    """Write one file per known quirk under ``dest/Projection-AIS``; return the files written."""
    root = Path(dest) / "Projection-AIS"
    written = []
    for relpath, write in quirk_writers().values():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        written.append(path)
    return written
