"""Each variable group says its ISMIP6 type and source; literal ocean sentinels are recorded."""

from __future__ import annotations

import numpy as np
import pytest

from tests.quirks_support import build_quirk_store


@pytest.fixture(scope="module")
def quirks(tmp_path_factory):
    return build_quirk_store(tmp_path_factory.mktemp("quirks"))


@pytest.mark.parametrize(
    ("quirk", "variable", "kind"),
    [
        ("sentinel_zero", "lithk", "ST"),
        ("sentinel_1e20", "orog", "ST"),
        ("sentinel_inside_data_range", "acabf", "FL"),
        ("time_garbage_nan", "lim", "ST"),
        ("grid_missing_xy_ucijpl", "lithk", "ST"),
        ("time_calendar_missing", "acabf", "FL"),
    ],
)
def test_variable_group_carries_its_ismip6_type_and_source_url(quirks, quirk, variable, kind):
    stored = quirks.group(quirk)
    assert stored.attrs["ismip6_variable"] == variable and stored.attrs["ismip6_variable_type"] == kind
    assert stored.attrs["ismip6_source_url"] == f"file://{quirks.path(quirk)}"


@pytest.mark.parametrize(("quirk", "sentinel"), [("sentinel_zero", 0.0), ("sentinel_1e20", float(np.float32(1e20)))])
def test_sentinel_outside_the_data_is_recorded_with_the_valid_range(quirks, quirk, sentinel):
    stored, source = quirks.group(quirk), quirks.source(quirk)
    variable = next(iter(source.data_vars))
    attrs = stored[variable].attrs
    first = source[variable].isel(time=0).values
    data = first[first != sentinel]
    assert attrs["ignore_value"] == sentinel
    assert (attrs["valid_min"], attrs["valid_max"]) == (float(data.min()), float(data.max()))
    # Recorded, not applied: readers see the source's values (the sentinel included).
    np.testing.assert_array_equal(stored[variable].values, source[variable].values)


def test_sentinel_inside_the_data_range_has_no_valid_range(quirks):
    attrs = quirks.group("sentinel_inside_data_range")["acabf"].attrs
    assert attrs["ignore_value"] == 0.0 and "valid_min" not in attrs and "valid_max" not in attrs


def test_field_without_a_shared_corner_value_has_no_sentinel(quirks):
    # NaN ocean: already missing to every reader, and not one finite value.
    attrs = quirks.group("sentinel_none")["topg"].attrs
    assert not {"ignore_value", "valid_min", "valid_max"} & set(attrs)
