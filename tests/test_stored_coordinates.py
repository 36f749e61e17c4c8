"""The deep check's look at time and grid: every quirk stored by the pipeline passes it, raw
garbage times and km grids do not (the check's ERROR through Dagster: test_reconcile_deep.py)."""

from __future__ import annotations

import cftime
import numpy as np
import pytest

from ismip6_assets.core.fixes.grid_units import metres_axis_problem
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.sample_archive import grid
from ismip6_assets.core.store import open_repository
from ismip6_assets.core.store_state import read_partition_state
from ismip6_assets.core.stored_coordinates import time_problem
from ismip6_assets.core.verify import SamplePolicy, verify_partition
from tests.quirks_support import build_quirk_store

DAYS = {"units": "days since 2000-01-01", "calendar": "proleptic_gregorian"}


@pytest.fixture(scope="module")
def quirks(tmp_path_factory):
    return build_quirk_store(tmp_path_factory.mktemp("quirks"))


def test_every_quirk_the_pipeline_stored_has_dates_and_a_metre_grid(quirks):
    source = parse_location(str(quirks.archive), "source")
    repo = open_repository(parse_location(str(quirks.store), "store"), source)
    checked = 0
    for key in list_archive(source).partitions:
        state = read_partition_state(repo, PartitionKey.parse(key))
        verified = verify_partition(repo, source, state, [g.url for g in state.groups.values()], SamplePolicy("always"))
        assert not [f for f in verified.findings if f["category"] in ("bad_time", "bad_grid")], key
        checked += verified.groups
    assert checked >= 40  # every stored group of the quirk archive was looked at


@pytest.mark.parametrize(
    ("values", "attrs", "reason"),
    [
        ([2.31e-310, 1.71e219, np.nan], {"ismip6_source_time_units": "days since 2015-01-01"}, "time has no units"),
        ([5479.0, np.nan], DAYS, "not finite"),
        ([0.0, 1.0], {"units": "years since 2015-01-01", "calendar": "365_day"}, "does not decode"),
        ([-73000.0, 5479.0], DAYS, "outside 1850–2200"),
    ],
)
def test_a_time_that_is_not_dates_in_1850_2200_is_named(values, attrs, reason):
    assert reason in time_problem(np.asarray(values), attrs)


def test_dates_in_1850_2200_pass():
    dates = [cftime.datetime(y, 1, 1, calendar=DAYS["calendar"]) for y in (1850, 2015, 2200)]
    assert time_problem(np.asarray(cftime.date2num(dates, DAYS["units"], DAYS["calendar"])), DAYS) == ""


@pytest.mark.parametrize(
    ("values", "units", "reason"),
    [
        (grid(191) / 1000, "km", "units 'km', not metres"),
        (grid(191) / 1000, "m", "reaches ±3,040 m"),
        (grid(191) * 1000, "m", "not the ±3,040,000 m EPSG:3031 grid"),
        (np.repeat(grid(96), 2)[:191], "m", "not monotonic"),
    ],
)
def test_an_axis_that_is_not_the_epsg_3031_grid_in_metres_is_named(values, units, reason):
    assert reason in metres_axis_problem("x", values, {"units": units})


def test_the_standard_and_a_shifted_metre_grid_pass():
    assert metres_axis_problem("x", grid(191), {"units": "m"}) == ""
    assert metres_axis_problem("y", grid(761)[::-1] + 500.0, {"units": "metres"}) == ""
