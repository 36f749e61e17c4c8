"""What readers' tools see: CF grid mapping and ISMIP6 names (fixes/cf.py), and a store config
that makes plain Icechunk print nothing of ours on open."""

from __future__ import annotations

import cf_xarray  # noqa: F401 - registers the .cf accessor
import icechunk
import pytest

from ismip6_assets.core.fixes.grid import EPSG_3031_WKT
from ismip6_assets.core.variables import VARIABLES
from tests.conftest import open_group

KEY = "AWI/PISM1/exp05"


@pytest.fixture
def stored(run_committed):
    return run_committed(KEY)


def test_cf_xarray_finds_the_crs_and_the_ismip6_names_of_a_stored_group(stored):
    ds = open_group(stored, "AWI_PISM1/exp05/lithk")  # a file with correct x/y: the grid fix left it alone

    assert ds.cf.grid_mapping_names == {"polar_stereographic": ["polar_stereographic"]}
    lithk = ds.cf["land_ice_thickness"]  # found by its standard name, with its grid mapping attached
    assert lithk.name == "lithk" and lithk.cf.grid_mapping_name == "polar_stereographic"
    crs = lithk.coords["polar_stereographic"]
    assert crs.attrs["grid_mapping_name"] == "polar_stereographic" and crs.attrs["standard_parallel"] == -71.0
    assert crs.attrs["crs_wkt"] == EPSG_3031_WKT and crs.attrs["crs_wkt"].endswith('ID["EPSG",3031]]')
    assert ds["lithk"].attrs["long_name"] == "Ice thickness" and ds["lithk"].attrs["units"] == "m"
    assert ds.cf.axes["X"] == ["x"] and ds.cf.axes["Y"] == ["y"]


def test_every_field_names_the_grid_mapping_and_scalars_carry_their_names(stored):
    for variable in ("orog", "acabf"):
        ds = open_group(stored, f"AWI_PISM1/exp05/{variable}")
        assert ds[variable].attrs["grid_mapping"] == "polar_stereographic"
        assert ds[variable].attrs["standard_name"] == VARIABLES[variable].standard_name
    lim = open_group(stored, "AWI_PISM1/exp05/lim")  # a time series: no grid, so no grid mapping
    assert "grid_mapping" not in lim["lim"].attrs and "polar_stereographic" not in lim.variables
    assert lim["lim"].attrs["standard_name"] == "land_ice_mass"


def test_the_stored_config_holds_no_cache_size_of_ours(stored, store_dir):
    # A persisted snapshot cache smaller than a snapshot made every reader's open print a WARN.
    config = icechunk.Repository.fetch_config(icechunk.local_filesystem_storage(str(store_dir)))
    assert config.caching is None and list(config.virtual_chunk_containers)
