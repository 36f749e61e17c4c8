"""Files without usable x/y get the standard EPSG:3031 grid; correct x/y stay as they are."""

from __future__ import annotations

import numpy as np
import pytest

from tests.quirks_support import build_quirk_store

STANDARD_191 = np.linspace(-3_040_000, 3_040_000, 191)  # 32 km
SNAPPED_192 = (np.arange(192) - 95.5) * 32_000.0  # 6,080,000 / 191 m is within 10 % of 32 km


@pytest.fixture(scope="module")
def quirks(tmp_path_factory):
    return build_quirk_store(tmp_path_factory.mktemp("quirks"))


@pytest.mark.parametrize(
    ("quirk", "expected"),
    [
        ("grid_missing_xy", STANDARD_191),
        ("grid_duplicated_xy", STANDARD_191),
        ("grid_missing_xy_snapped", SNAPPED_192),
        # UCIJPL: file exp12lithk_AIS_UCIJPL_ISSM_exp12.nc holds `lithk` (upstream looked up `exp12lithk`).
        ("grid_missing_xy_ucijpl", STANDARD_191),
    ],
)
def test_missing_or_duplicated_xy_become_the_standard_grid(quirks, quirk, expected):
    stored, source = quirks.group(quirk), quirks.source(quirk)
    variable = next(iter(source.data_vars))
    np.testing.assert_array_equal(stored["x"].values, expected)
    np.testing.assert_array_equal(stored["y"].values, expected)
    assert stored[variable].dims == ("time", "y", "x")
    assert stored[variable].attrs["grid_mapping"] == "polar_stereographic"
    mapping = stored["polar_stereographic"].attrs
    assert mapping["grid_mapping_name"] == "polar_stereographic" and mapping["standard_parallel"] == -71.0
    assert mapping["straight_vertical_longitude_from_pole"] == 0.0 and mapping["latitude_of_projection_origin"] == -90.0
    np.testing.assert_array_equal(stored[variable].values, source[variable].values)


@pytest.mark.parametrize("quirk", ["grid_xy_km", "grid_xy_km_by_extent"])
def test_xy_in_km_are_stored_in_metres(quirks, quirk):
    # By their units (`km`), or without units by the grid's ±3,040 extent.
    stored, source = quirks.group(quirk), quirks.source(quirk)
    variable = next(iter(source.data_vars))
    np.testing.assert_allclose(source["x"].values * 1000, STANDARD_191)
    for axis in ("x", "y"):
        np.testing.assert_array_equal(stored[axis].values, STANDARD_191)
        assert stored[axis].attrs["units"] == "m"
    assert stored[variable].attrs["grid_mapping"] == "polar_stereographic"
    np.testing.assert_array_equal(stored[variable].values, source[variable].values)
    assert "grid_xy_km" in quirks.results[quirk].quirks


def test_correct_xy_are_left_untouched(quirks):
    stored, source = quirks.group("grid_correct_xy"), quirks.source("grid_correct_xy")
    # A regular grid 500 m off the standard one: a fix that re-derived x/y would move it.
    np.testing.assert_array_equal(stored["x"].values, source["x"].values)
    np.testing.assert_array_equal(stored["y"].values, source["y"].values)
    assert stored["base"].attrs["grid_mapping"] == "polar_stereographic"  # every field names the CRS (fixes/cf.py)
    np.testing.assert_array_equal(stored["base"].values, source["base"].values)
