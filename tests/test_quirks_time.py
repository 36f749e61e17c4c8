"""Every broken time encoding of the archive decodes to the dates the modelling group meant.

Each case goes through the real pipeline (list → virtualize → commit) and is read back with plain
``xr.open_zarr(..., decode_times=True)`` from the Icechunk store.
"""

from __future__ import annotations

import numpy as np
import pytest

from ismip6_assets.sample_quirks import GARBAGE_PARTITION
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
}
GARBAGE = {
    "time_garbage_nan": "nan",
    "time_garbage_huge": "1e+219",
    "time_garbage_denormal": "2.31e-310",
    "time_garbage_inf": "inf",
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
def test_garbage_time_is_left_alone_with_a_warning(quirks, quirk):
    stored, source = quirks.group(quirk), quirks.source(quirk)
    # No invented dates: the numbers are the source's, and nothing makes xarray decode them.
    assert stored["time"].dtype == np.float64
    np.testing.assert_array_equal(stored["time"].values, source["time"].values)
    assert "units" not in stored["time"].attrs
    assert stored["time"].attrs["ismip6_source_time_units"] == "days since 2015-01-01"
    assert "time left undecoded" in stored.attrs["ismip6_warning"] and GARBAGE[quirk] in stored.attrs["ismip6_warning"]
    variable = next(iter(source.data_vars))
    np.testing.assert_array_equal(stored[variable].values, source[variable].values)


def test_unitless_time_that_fits_no_rule_is_refused_not_guessed(quirks):
    # Neither a day of 2015 nor a year start in days since 2000: a guess could land decades off.
    stored, source = quirks.group("time_units_missing_ambiguous"), quirks.source("time_units_missing_ambiguous")
    assert stored["time"].dtype == np.float64
    np.testing.assert_array_equal(stored["time"].values, source["time"].values)
    assert "time left undecoded" in stored.attrs["ismip6_warning"] and "no units" in stored.attrs["ismip6_warning"]


@pytest.mark.slow
def test_garbage_time_is_counted_in_the_partition_metadata(quirks, tmp_path, instance):
    import dagster as dg

    from ismip6_assets.resources import ArchiveResource
    from ismip6_assets.runs import run_partition

    archive = copy_partition(quirks.archive, tmp_path / "archive", GARBAGE_PARTITION)
    instance.add_dynamic_partitions("model_experiment", [GARBAGE_PARTITION])
    resource = ArchiveResource(source_url=str(archive), store_url=str(tmp_path / "store"))
    outcome = run_partition(resource, instance, GARBAGE_PARTITION)

    assert outcome.status == "OK" and outcome.written == 4 and outcome.failures == 0
    event = instance.get_latest_materialization_event(dg.AssetKey("virtual_dataset"))
    assert event.asset_materialization.metadata["files_with_warnings"].value == 4


@pytest.mark.parametrize(
    ("epoch", "repaired"),
    [("1-1-2015", "2015-01-01"), ("2015-1-0", "2015-01-01"), ("2015-01-00 00:00:00", "2015-01-01 00:00:00"), ("2015-7-1", "2015-07-01")],
)
def test_epoch_repair(epoch, repaired):
    from ismip6_assets.fixes.time_units import repair_epoch

    assert repair_epoch(epoch)[0] == repaired


def test_unitless_steps_under_a_month_are_refused():
    from ismip6_assets.fixes.time_units import UndecodableTime, time_decoding

    # 0, 1, 2, … may count years; read as days they would end in 2015 instead of 2100.
    with pytest.raises(UndecodableTime, match="steps under a month"):
        time_decoding(np.arange(86.0), {})
