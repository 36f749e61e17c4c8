"""Every broken time encoding of the archive decodes to the dates the modelling group meant.

Each case goes through the real pipeline (list → virtualize → commit) and is read back with plain
``xr.open_zarr(..., decode_times=True)`` from the Icechunk store.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import zarr

from ismip6_assets.core.sample_quirks import GARBAGE_PARTITION
from tests.conftest import open_plain_repo
from tests.quirks_support import build_quirk_store, copy_partition, decoded, jan1

EXPECTED_DATES = {
    "time_unit_typo": jan1(2015, 2016, 2017, 2018),
    "time_epoch_day_month_year": jan1(2015, 2016, 2017, 2018),
    "time_epoch_day_zero": jan1(2015, 2016, 2017, 2018),
    "time_epoch_day_zero_padded": jan1(2015, 2016, 2017, 2018),
    # 365_day mid-year; read as the CF default `standard`, 2016 would land on Jul 1 (leap year).
    "time_calendar_missing": [(y, 7, 2, 12) for y in (2015, 2016, 2017, 2018)],
    "time_360_day_feb_30": [(2015, 1, 1, 0), (2015, 2, 28, 0), (2016, 1, 1, 0), (2016, 2, 29, 0)],
    "time_seconds_since": jan1(2015, 2016, 2017, 2018),
    "time_months_since": [(2015, 1, 1, 0), (2016, 1, 1, 0), (2016, 7, 1, 0), (2017, 1, 1, 0)],
    # Labelled gregorian, stepped 365 days: as gregorian, 2016-12-31 and 2017-12-31 would follow.
    "time_gregorian_365_day_steps": jan1(2016, 2017, 2018, 2019),
    "time_units_missing_offsets": jan1(2015, 2016, 2017, 2018),
    # Already days since 2000-01-01: the upstream heuristic shifted these to 2030.
    "time_units_missing_days_since_2000": jan1(2015, 2016),
    "time_packed_dates": [(2015, 1, 1, 0), (2016, 7, 1, 0), (2017, 1, 1, 0), (2017, 1, 1, 12)],  # month 13 → next Jan
    "time_packed_day_offsets": [(2015, 1, 1, 0), (2016, 1, 1, 0), (2100, 10, 4, 0)],  # 365_day offsets from 2015
    # NCAR_CISM exp07: labelled proleptic_gregorian, stepped 365 days; as labelled, 2016-12-31 and 2017-12-31 follow.
    "time_packed_day_offsets_365_steps": jan1(2015, 2016, 2017, 2018),
    # Float years without units: steps of 1 are refused as days, so these were stored raw.
    "time_float_years": jan1(2015, 2016, 2017, 2018),
    "time_float_years_mid_year": [(y, 7, 2, 12) for y in (2015, 2016, 2017, 2018)],  # half of a 365_day year
    "time_years_since_365_day": jan1(2015, 2016, 2017, 2018),
    # gregorian: 2016 has 366 days, so half of it ends at midnight, not noon.
    "time_years_since_gregorian": [(2015, 1, 1, 0), (2016, 1, 1, 0), (2016, 7, 2, 0), (2017, 1, 1, 0)],
    "time_garbage_partner": jan1(2015, 2016, 2017),
    "time_garbage_bisicles_partner": jan1(2015, 2016, 2017, 2018, 2019),
}
# quirk: (the value the reason names, the quirk whose axis it takes)
GARBAGE = {
    "time_garbage_nan": ("nan", "time_garbage_partner"),
    "time_garbage_huge": ("1e+219", "time_garbage_partner"),
    "time_garbage_denormal": ("2.31e-310", "time_garbage_partner"),
    "time_garbage_inf": ("inf", "time_garbage_partner"),
    # CPOM_BISICLES lim/limnsw: uninitialised memory, then day offsets without units.
    "time_garbage_bisicles_lim": ("1.71e+219", "time_garbage_bisicles_partner"),
    "time_garbage_bisicles_limnsw": ("2.31e-310", "time_garbage_bisicles_partner"),
    # Fits no rule (neither a day of 2015 nor a year start in days since 2000): a guess could land decades off.
    "time_units_missing_ambiguous": ("no units", "time_units_missing_days_since_2000"),
}


@pytest.fixture(scope="module")
def quirks(tmp_path_factory):
    return build_quirk_store(tmp_path_factory.mktemp("quirks"))


@pytest.mark.parametrize("quirk", sorted(EXPECTED_DATES))
def test_time_quirk_decodes_to_the_intended_dates(quirks, quirk):
    stored, source = quirks.group(quirk), quirks.source(quirk)
    assert decoded(stored["time"].values) == EXPECTED_DATES[quirk]
    variable = next(iter(source.data_vars))
    np.testing.assert_array_equal(stored[variable].values, source[variable].values)


@pytest.mark.parametrize("quirk", sorted(GARBAGE))
def test_garbage_time_takes_the_axis_of_the_partitions_other_files(quirks, quirk):
    reason, partner = GARBAGE[quirk]
    stored, source, lender = quirks.group(quirk), quirks.source(quirk), quirks.group(partner)
    # Never stored raw: the dates are the partner file's, decoded as a reader opens them.
    assert decoded(stored["time"].values) == EXPECTED_DATES[partner] == decoded(lender["time"].values)
    assert stored.attrs["ismip6_time_borrowed_from"] == f"file://{quirks.path(partner)}"
    assert reason in stored.attrs["ismip6_time_borrowed_because"]
    variable = next(iter(source.data_vars))
    np.testing.assert_array_equal(stored[variable].values, source[variable].values)
    assert "time_borrowed" in quirks.results[quirk].quirks


def test_garbage_time_with_no_axis_of_its_length_is_a_failure_record(quirks):
    from ismip6_assets.core.virtualize import FailureRecord

    failure = quirks.results["time_garbage_no_partner"]
    assert isinstance(failure, FailureRecord) and failure.url == f"file://{quirks.path('time_garbage_no_partner')}"
    assert failure.error.startswith("time not decodable: time values are not dates")
    assert "no other file of the partition has a decodable 3-step time axis" in failure.error
    repo = open_plain_repo(quirks.store, quirks.archive)
    experiment = zarr.open_group(repo.readonly_session("main").store, path="CPOM_BISICLES/exp07", mode="r")
    assert "iareagr" not in set(experiment.group_keys())  # nothing of it stored
    recorded = {r["url"]: r["error"] for r in json.loads(experiment.attrs["ismip6_failures"])}
    assert recorded[failure.url] == failure.error


def test_quirks_cftime_cannot_read_are_refused_by_xarray_on_the_source(quirks):
    # What the fixes are for: as written, these do not decode (or decode to other dates).
    for quirk in ("time_years_since_365_day", "time_years_since_gregorian"):
        with pytest.raises(ValueError):
            xr.open_dataset(quirks.path(quirk)).load()
    as_written = xr.open_dataset(quirks.path("time_float_years"), decode_times=False)["time"]
    assert "units" not in as_written.attrs


@pytest.mark.slow
def test_borrowed_time_is_counted_in_the_partition_metadata(quirks, tmp_path, instance):
    import dagster as dg

    from ismip6_assets.defs.resources import ArchiveResource
    from ismip6_assets.cli.runs import run_partition

    archive = copy_partition(quirks.archive, tmp_path / "archive", GARBAGE_PARTITION)
    instance.add_dynamic_partitions("model_experiment", [GARBAGE_PARTITION])
    resource = ArchiveResource(source_url=str(archive), store_url=str(tmp_path / "store"))
    outcome = run_partition(resource, instance, GARBAGE_PARTITION)

    assert outcome.status == "OK" and outcome.written == 5 and outcome.failures == 0
    event = instance.get_latest_materialization_event(dg.AssetKey("virtual_dataset"))
    assert event.asset_materialization.metadata["files_with_warnings"].value == 4  # each borrowed axis


@pytest.mark.parametrize(
    ("epoch", "repaired"),
    [("1-1-2015", "2015-01-01"), ("2015-1-0", "2015-01-01"), ("2015-01-00 00:00:00", "2015-01-01 00:00:00"), ("2015-7-1", "2015-07-01")],
)
def test_epoch_repair(epoch, repaired):
    from ismip6_assets.core.fixes.time_units import repair_epoch

    assert repair_epoch(epoch)[0] == repaired


def test_unitless_steps_under_a_month_are_refused():
    from ismip6_assets.core.fixes.time_units import UndecodableTime, time_decoding

    # 0, 1, 2, … may count years; read as days they would end in 2015 instead of 2100.
    with pytest.raises(UndecodableTime, match="steps under a month"):
        time_decoding(np.arange(86.0), {})
