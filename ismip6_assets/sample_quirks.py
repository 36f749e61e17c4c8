"""Real NetCDF files with each known quirk of the ISMIP6 archive: ``ismip6 sample-archive --quirks``.

One file per quirk, under partitions of their own so they never collide with the plain sample
archive. `QUIRK_FILES` maps each quirk's name to its path under ``Projection-AIS``; the tests read
the names from here and state the dates, grids and failures they expect on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from ismip6_assets.sample_archive import grid

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


def _path(partition: str, variable: str, prefix: str = "") -> str:
    inst, model, exp = partition.split("/")
    token = {"fETISh_32km": "fETISh"}.get(model, model)
    return f"{partition}/{prefix}{variable}_AIS_{inst}_{token}_{exp}.nc"


def _field(
    variable: str, time: np.ndarray, time_attrs: dict, n: int = 31, xy: str = "standard", ocean: float = np.nan, span=(100.0, 3000.0)
) -> xr.Dataset:
    """A field on an ``n``-point grid; ``xy``: ``standard`` x/y, ``missing`` (dims nx/ny), ``duplicated``, ``shifted``."""
    rng = np.random.default_rng(len(variable) * 7919 + n)
    values = rng.uniform(*span, (len(time), n, n)).astype("float32")
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    values[:, np.hypot(xx, yy) > 0.9] = ocean
    dims = ("time", "ny", "nx") if xy == "missing" else ("time", "y", "x")
    coords = {"time": ("time", np.asarray(time, dtype="float64"), time_attrs)}
    axis = {"standard": grid(n), "duplicated": np.repeat(grid((n + 1) // 2), 2)[:n], "shifted": grid(n) + 500.0}.get(xy)
    if axis is not None:
        coords |= {"x": ("x", axis, {"units": "m"}), "y": ("y", axis.copy(), {"units": "m"})}
    return xr.Dataset({variable: (dims, values, {"units": "m"})}, coords=coords)


def _scalar(variable: str, time: np.ndarray, time_attrs: dict) -> xr.Dataset:
    data = 2.6e19 + np.arange(len(time), dtype="float64") * 1e16
    return xr.Dataset({variable: ("time", data, {"units": "kg"})}, coords={"time": ("time", np.asarray(time, dtype="float64"), time_attrs)})


def _write(ds: xr.Dataset, path: Path, fmt: str = "NETCDF4", contiguous: bool = False, unlimited: bool = False) -> None:
    encoding = {name: {"_FillValue": None} for name in ds.variables if name != next(iter(ds.data_vars))}
    if fmt == "NETCDF4":
        var = next(iter(ds.data_vars))
        encoding[var] = {"contiguous": True} if contiguous else {"zlib": True, "complevel": 1}
    ds.to_netcdf(path, format=fmt, engine="netcdf4", encoding=encoding, unlimited_dims=["time"] if unlimited else None)


YEARS = np.arange(N_TIMES) * 365.0
DAYS_365 = {"units": "days since 2015-01-01", "calendar": "365_day"}


def _time_quirks() -> dict[str, tuple[str, Callable[[Path], None]]]:
    t = TIME_PARTITION
    return {
        # Epoch 2010, so that reading the file as unit-less (the typo ignored) would land in 2005.
        "time_unit_typo": (_path(t, "lithk"), lambda p: _write(_field("lithk", YEARS + 1825, {"unit": "days since 2010-01-01", "calendar": "365_day"}), p)),
        "time_epoch_day_month_year": (_path(t, "orog"), lambda p: _write(_field("orog", YEARS, {"units": "days since 1-1-2015", "calendar": "365_day"}), p)),
        "time_epoch_day_zero": (_path(t, "topg"), lambda p: _write(_field("topg", YEARS, {"units": "days since 2015-1-0", "calendar": "365_day"}), p)),
        "time_epoch_day_zero_padded": (_path(t, "base"), lambda p: _write(_field("base", YEARS, {"units": "days since 2015-01-00", "calendar": "365_day"}), p)),
        "time_calendar_missing": (_path(t, "acabf"), lambda p: _write(_field("acabf", YEARS + 182.5, {"units": "days since 2015-01-01"}), p)),
        "time_360_day_feb_30": (_path(t, "sftgif"), lambda p: _write(_field("sftgif", np.array([0.0, 59.0, 360.0, 419.0]), {"units": "days since 2015-01-01", "calendar": "360_day"}), p)),
        "time_seconds_since": (_path(t, "xvelmean"), lambda p: _write(_field("xvelmean", YEARS * 86400, {"units": "seconds since 2015-01-01 00:00:00", "calendar": "365_day"}), p)),
        "time_months_since": (_path(t, "yvelmean"), lambda p: _write(_field("yvelmean", np.array([0.0, 12.0, 18.0, 24.0]), {"units": "months since 2015-01-01", "calendar": "360_day"}), p)),
        "time_gregorian_365_day_steps": (_path(t, "strbasemag"), lambda p: _write(_field("strbasemag", YEARS + 365.0, {"units": "days since 2015-01-01", "calendar": "gregorian"}), p)),
        "time_units_missing_offsets": (_path(UNITLESS_PARTITION, "lithk"), lambda p: _write(_field("lithk", YEARS, {}), p)),
        "time_units_missing_days_since_2000": (_path(UNITLESS_PARTITION, "orog"), lambda p: _write(_field("orog", np.array([5479.0, 5844.0]), {}), p)),
        "time_packed_dates": (_path(PACKED_PARTITION, "lithk"), lambda p: _write(_field("lithk", np.array([20150101.0, 20160701.0, 20161301.0, 20170101.5]), {"units": "day as %Y%m%d.%f"}), p)),
        "time_packed_day_offsets": (_path(PACKED_PARTITION, "orog"), lambda p: _write(_field("orog", np.array([0.0, 365.0, 31301.0]), {"units": "day as %Y%m%d.%f"}), p)),
        "time_garbage_nan": (_path(GARBAGE_PARTITION, "lim"), lambda p: _write(_scalar("lim", np.array([0.0, np.nan, 730.0]), DAYS_365), p)),
        "time_garbage_huge": (_path(GARBAGE_PARTITION, "limnsw"), lambda p: _write(_scalar("limnsw", np.array([0.0, 1e219, 730.0]), DAYS_365), p)),
        "time_garbage_denormal": (_path(GARBAGE_PARTITION, "iareagr"), lambda p: _write(_scalar("iareagr", np.array([2.31e-310, 365.0, 730.0]), DAYS_365), p)),
        "time_garbage_inf": (_path(GARBAGE_PARTITION, "iareafl"), lambda p: _write(_scalar("iareafl", np.array([0.0, 365.0, np.inf]), DAYS_365), p)),
    }


def _grid_quirks() -> dict[str, tuple[str, Callable[[Path], None]]]:
    g, times = GRID_PARTITION, YEARS[:2]
    return {
        "grid_missing_xy": (_path(g, "lithk"), lambda p: _write(_field("lithk", times, DAYS_365, n=191, xy="missing"), p)),
        "grid_duplicated_xy": (_path(g, "orog"), lambda p: _write(_field("orog", times, DAYS_365, n=191, xy="duplicated"), p)),
        "grid_missing_xy_snapped": (_path(g, "topg"), lambda p: _write(_field("topg", times, DAYS_365, n=192, xy="missing"), p)),
        "grid_correct_xy": (_path(g, "base"), lambda p: _write(_field("base", times, DAYS_365, n=191, xy="shifted"), p)),
        "grid_missing_xy_ucijpl": (_path(UCIJPL_PARTITION, "lithk", prefix="exp12"), lambda p: _write(_field("lithk", times, DAYS_365, n=191, xy="missing"), p, contiguous=True)),
    }


def _format_quirks() -> dict[str, tuple[str, Callable[[Path], None]]]:
    f, c, b = FORMATS_PARTITION, CONTIGUOUS_PARTITION, BROKEN_PARTITION
    field = lambda v: _field(v, YEARS, DAYS_365)  # noqa: E731
    return {
        "netcdf3_classic": (_path(f, "lithk"), lambda p: _write(field("lithk"), p, "NETCDF3_CLASSIC", unlimited=True)),
        "netcdf3_64bit_offset": (_path(f, "orog"), lambda p: _write(field("orog"), p, "NETCDF3_64BIT")),
        "netcdf3_cdf5": (_path(f, "topg"), lambda p: _write(field("topg"), p, "NETCDF3_64BIT_DATA")),
        "netcdf4_beside_netcdf3": (_path(f, "acabf"), lambda p: _write(field("acabf"), p)),
        "contiguous_netcdf4": (_path(c, "lithk"), lambda p: _write(field("lithk"), p, contiguous=True)),
        "contiguous_netcdf3": (_path(c, "orog"), lambda p: _write(field("orog"), p, "NETCDF3_CLASSIC")),
        "broken_good_neighbour": (_path(b, "lithk"), lambda p: _write(field("lithk"), p)),
        "broken_zero_bytes": (_path(b, "orog"), lambda p: p.write_bytes(b"")),
        "broken_truncated_hdf5": (_path(b, "topg"), lambda p: _truncate(p, lambda q: _write(field("topg"), q), keep=0.5)),
        "broken_not_netcdf": (_path(b, "base"), lambda p: p.write_text("<html><body>404 Not Found</body></html>\n")),
        "broken_netcdf3_records_past_eof": (_path(b, "acabf"), lambda p: _truncate(p, lambda q: _write(field("acabf"), q, "NETCDF3_CLASSIC", unlimited=True), keep=0.7)),
        "skipped_folder": (_path(SKIPPED_PARTITION, "lithk"), lambda p: _write(field("lithk"), p)),
    }


def _truncate(path: Path, write: Callable[[Path], None], keep: float) -> None:
    write(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _sentinel_quirks() -> dict[str, tuple[str, Callable[[Path], None]]]:
    s, times = SENTINEL_PARTITION, YEARS[:3]
    return {
        "sentinel_zero": (_path(s, "lithk"), lambda p: _write(_field("lithk", times, DAYS_365, ocean=0.0), p)),
        "sentinel_1e20": (_path(s, "orog"), lambda p: _write(_field("orog", times, DAYS_365, ocean=1e20), p)),
        "sentinel_none": (_path(s, "topg"), lambda p: _write(_field("topg", times, DAYS_365), p)),
        "sentinel_inside_data_range": (_path(s, "acabf"), lambda p: _write(_field("acabf", times + 182.5, DAYS_365, ocean=0.0, span=(-1.0, 1.0)), p)),
    }


def quirk_writers() -> dict[str, tuple[str, Callable[[Path], None]]]:
    """Quirk name → (path under ``Projection-AIS``, writer of that file)."""
    return _time_quirks() | _grid_quirks() | _format_quirks() | _sentinel_quirks()


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
