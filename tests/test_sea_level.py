"""Sea level from the store, against Seroussi et al. (2020)'s recomputed JPL1_ISSM exp05 numbers.

The archive (tests/sea_level_support.py) is real NetCDF whose fields give the published volumes
under the ISMIP6 method; it goes through the library pipeline into a real Icechunk store, and the
sea-level products are computed from the store. Each test names the mistake it catches.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.sea_level import densities
from ismip6_assets.core.sea_level_store import ensemble_group, read_table, refresh_sea_level, table_path
from ismip6_assets.core.store import open_repository
from tests.conftest import open_plain_repo
from tests.sea_level_support import expected_sle_mm, reference, write_real_numbers_archive
from tests.test_views import commit_archive

TOLERANCE_MM = 0.05


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("sea_level")
    archive, store = root / "archive", root / "store"
    write_real_numbers_archive(archive)
    commit_archive(archive, store)
    location = parse_location(str(store), "store")
    refresh = refresh_sea_level(open_repository(location, parse_location(str(archive), "source")), location)
    return archive, store, refresh


def rows(table: pd.DataFrame, institution: str, experiment: str) -> pd.DataFrame:
    return table[(table.institution == institution) & (table.experiment == experiment)].set_index("year")


def test_exp05_gives_seroussis_minus_11_2_mm_by_2100_and_the_whole_series(built):
    """Catches one density pair for every model (NCAR_CISM's 910 kg m-3 scales its millimetres),
    the other melt family's control, and a year off (model year 2099 is the 2100-01-01 state)."""
    _, store, _ = built
    table, _ = read_table(parse_location(str(store), "store"))  # the parquet, as written
    jpl = rows(table, "JPL1", "exp05")
    assert jpl.loc[2099, "time"] == pd.Timestamp("2100-01-01")
    assert abs(jpl.loc[2099, "sle_mm"] - (-11.2)) <= TOLERANCE_MM, jpl.loc[2099, "sle_mm"]
    for institution, rho_ice in (("JPL1", 917.0), ("NCAR", 910.0)):
        got = rows(table, institution, "exp05")
        expected = expected_sle_mm(rho_ice)
        assert sorted(got.index) == sorted(expected) == list(range(2015, 2100))
        worst = max(abs(got.loc[y, "sle_mm"] - v) for y, v in expected.items())
        assert worst <= TOLERANCE_MM, (institution, worst)
        assert (got["control_experiment"] == "ctrl_proj_std").all() and (got["rho_ice"] == rho_ice).all()
    assert jpl.loc[2015, "sle_mm"] == 0.0  # t0: the projection's first step


def test_volumes_are_seroussis_for_each_model(built):
    """Catches a missing area factor, one density pair for every model, floating ice or ice-free
    cells counted, masks not clipped, and fill values or sentinels read as thickness: each moves the
    volume by far more than 1e-6 of it."""
    _, _, refresh = built
    labels, ivaf, dv = reference()
    for institution in ("JPL1", "NCAR"):
        got = rows(refresh.table, institution, "exp05")
        np.testing.assert_allclose(got.loc[labels - 1, "ivaf_m3"].to_numpy(), ivaf, rtol=1e-6, err_msg=institution)
        np.testing.assert_allclose(got.loc[labels - 1, "ivaf_control_m3"].to_numpy(), ivaf - dv, rtol=1e-6, err_msg=institution)
    assert densities("NCAR_CISM") == (910.0, 1026.0) and densities("JPL1_ISSM") == (917.0, 1023.0)


def test_the_control_is_its_melt_familys_matched_by_model_year(built):
    """ctrl_proj_std starts a model year before exp05 (2014): matched by position, every control
    value would be a year off; ctrl_proj_open (the open family's) drifts differently."""
    _, _, refresh = built
    control = rows(refresh.table, "JPL1", "ctrl_proj_std")
    assert control.index.min() == 2014 and control["sle_mm"].isna().all() and control["control_experiment"].isna().all()
    exp = rows(refresh.table, "JPL1", "exp05")
    np.testing.assert_array_equal(exp["ivaf_control_m3"].to_numpy(), control.loc[exp.index, "ivaf_m3"].to_numpy())
    assert rows(refresh.table, "JPL1", "ctrl_proj_open")["sle_mm"].isna().all()


def test_the_ensemble_opens_with_plain_xarray(built):
    archive, store, refresh = built
    repo = open_plain_repo(store, archive)
    ds = xr.open_zarr(repo.readonly_session("main").store, group=ensemble_group("exp05"), consolidated=False)
    assert ds.sle_mm.dims == ("model", "time") and list(ds.model.values) == ["JPL1_ISSM", "NCAR_CISM"]
    assert ds.sle_mm.attrs["units"] == "mm" and ds.ivaf.attrs["units"] == "m3" and "Seroussi" in ds.attrs["ismip6_sea_level_method"]
    assert ds.attrs["control_experiment"] == "ctrl_proj_std"
    (at_2099,) = ds.sle_mm.sel(model="JPL1_ISSM").sel(time="2099").values  # the views' convention: model year 2099 = the 2100-01-01 state
    assert at_2099 == rows(refresh.table, "JPL1", "exp05").loc[2099, "sle_mm"]
    labels, ivaf, _ = reference()
    np.testing.assert_allclose(ds.lim.sel(model="JPL1_ISSM").swap_dims(time="year").sel(year=labels - 1).values, ivaf * 917.0, rtol=1e-6)
    assert ds.lim.attrs["units"] == "kg"
    assert list(ds.rho_ice.values) == [917.0, 910.0]
    assert sorted(refresh.ensembles_written) == ["ctrl_proj_open", "ctrl_proj_std", "exp05"]


def test_the_stac_collection_names_the_table_and_each_items_ensemble(built):
    from ismip6_assets.core.catalog import build_catalog
    from ismip6_assets.core.stac import build_collection

    archive, store, _ = built
    location = parse_location(str(store), "store")
    frame, _, _ = build_catalog(open_repository(location, parse_location(str(archive), "source")), location)
    collection = build_collection(frame, location.url)
    assert collection.assets["sea_level"].href == location.url + "/derived/sea_level.parquet"
    ensemble = collection.get_item("JPL1_ISSM-exp05").assets["sea_level_ensemble"]
    assert ensemble.extra_fields["xarray:open_kwargs"]["group"] == ensemble_group("exp05") == "derived/ensemble/exp05"


def test_a_partitions_saved_volumes_are_taken_only_while_its_sources_are_the_stores(built):
    """The `ice_volume` asset's saved results (derived/volumes/...json): the same numbers as read
    through the store, bit for bit; taken again while current; ignored once a field's source differs."""
    import dataclasses

    from ismip6_assets.core.partition_volumes import refresh_partition_volumes, saved_volumes, volume_path
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.core.store_state import read_partition_state

    archive, store, refresh = built
    location = parse_location(str(store), "store")
    repo = open_repository(location, parse_location(str(archive), "source"))
    key = PartitionKey("JPL1", "ISSM", "exp05")
    first = refresh_partition_volumes(repo, location, [key])[key]
    assert first.recomputed and (store / "derived/volumes/JPL1_ISSM/exp05.json").exists()
    assert volume_path(location, key).url.endswith("/derived/volumes/JPL1_ISSM/exp05.json")
    again = refresh_partition_volumes(repo, location, [key])[key]
    assert not again.recomputed  # current: taken from the file, not read
    np.testing.assert_array_equal(again.ivaf.to_numpy(), rows(refresh.table, "JPL1", "exp05")["ivaf_m3"].to_numpy())
    assert list(again.ivaf.index) == list(first.ivaf.index) and sorted(again.scalars) == sorted(first.scalars) == ["lim"]
    assert again.scalars["lim"][0].equals(first.scalars["lim"][0]) and again.scalars["lim"][1] == first.scalars["lim"][1]
    state = read_partition_state(repo, key)
    assert saved_volumes(location, {key: state})
    moved = dataclasses.replace(state, view_sources={**state.view_sources, "lithk": "another fingerprint"})
    assert saved_volumes(location, {key: moved}) == {}  # a re-delivered field: read again


def test_a_dask_cluster_reads_the_fields_when_the_executor_setting_names_one(built):
    """The executor setting (ISMIP6_EXECUTOR=dask://...) reaches the sea level: its fields are read and
    reduced by the cluster's worker process (the session pickled to it), with the same volumes."""
    import distributed

    from ismip6_assets.core import executors
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.core.partition_volumes import partition_volume
    from ismip6_assets.core.store_state import read_partition_state

    archive, store, refresh = built
    repo = open_repository(parse_location(str(store), "store"), parse_location(str(archive), "source"))
    key = PartitionKey("NCAR", "CISM", "exp05")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        try:
            scheduler = executors.read_scheduler(executors.parse_spec(cluster.scheduler_address))
            assert isinstance(scheduler, distributed.Client)
            with distributed.get_task_stream(scheduler) as stream:
                volume = partition_volume(repo.readonly_session("main"), key, read_partition_state(repo, key), scheduler)
            workers = set(scheduler.scheduler_info()["workers"])
        finally:
            executors.shutdown_shared()
    assert stream.data and {task["worker"] for task in stream.data} <= workers  # the cluster's worker process ran them
    np.testing.assert_array_equal(volume.ivaf.to_numpy(), rows(refresh.table, "NCAR", "exp05")["ivaf_m3"].to_numpy())
    assert sorted(volume.scalars) == ["lim"]


def test_a_partition_without_a_field_is_left_out_with_its_reason_and_only_it_is_recomputed(built):
    """Runs last: it changes the module's archive and store."""
    archive, store, first = built
    location, source = parse_location(str(store), "store"), parse_location(str(archive), "source")
    repo = open_repository(location, source)
    again = refresh_sea_level(repo, location)
    assert again.current and again.recomputed == []  # nothing changed: nothing read, nothing written

    (archive / "Projection-AIS/NCAR/CISM/ctrl_proj_std/sftgrf_AIS_NCAR_CISM_ctrl_proj_std.nc").unlink()
    commit_archive(archive, store)
    after = refresh_sea_level(repo, location)

    assert after.recomputed == ["NCAR/CISM/ctrl_proj_std"]
    assert after.left_out["NCAR/CISM/ctrl_proj_std"] == "no sftgrf"
    assert after.left_out["NCAR/CISM/exp05"] == "no sea level: its control ctrl_proj_std has no volume: no sftgrf"
    assert sorted(after.ensembles_written) == ["ctrl_proj_std", "exp05"]  # the control's own, and the projection it enters
    ncar = rows(after.table, "NCAR", "exp05")
    assert ncar["sle_mm"].isna().all() and ncar["ivaf_m3"].notna().all()
    assert rows(after.table, "JPL1", "exp05").equals(rows(first.table, "JPL1", "exp05"))
    assert table_path(location).url.endswith("/derived/sea_level.parquet")
    ds = xr.open_zarr(open_plain_repo(store, archive).readonly_session("main").store, group=ensemble_group("ctrl_proj_std"), consolidated=False)
    assert ds.attrs["ismip6_left_out"] == {"NCAR_CISM": "no sftgrf"}
    ds = xr.open_zarr(open_plain_repo(store, archive).readonly_session("main").store, group=ensemble_group("exp05"), consolidated=False)
    assert ds.attrs["ismip6_left_out"] == {"NCAR_CISM": "no sea level: its control ctrl_proj_std has no volume: no sftgrf"}


def test_a_source_that_cannot_be_read_leaves_its_partition_out_for_now(built):
    """Runs last: it deletes a source file behind the store's back. The refresh goes on, and the
    reason is not cached: the next refresh tries the partition again."""
    from ismip6_assets.core.partition_volumes import partition_volume
    from ismip6_assets.core.sea_level_store import _cached_volume
    from ismip6_assets.core.store_state import read_partition_state
    from ismip6_assets.core.paths import PartitionKey

    archive, store, _ = built
    repo = open_repository(parse_location(str(store), "store"), parse_location(str(archive), "source"))
    key = PartitionKey("JPL1", "ISSM", "ctrl_proj_open")
    (archive / "Projection-AIS/JPL1/ISSM/ctrl_proj_open/lithk_AIS_JPL1_ISSM_ctrl_proj_open.nc").unlink()
    volume = partition_volume(repo.readonly_session("main"), key, read_partition_state(repo, key))
    assert volume.ivaf is None and volume.transient
    assert volume.reason.startswith("its fields could not be read through the store: ") and "\n" not in volume.reason
    saved = {"partitions": {str(key): {"volume_key": volume.volume_key, "view_key": volume.view_key, "reason": volume.reason, "transient": True}}}
    assert _cached_volume(key, read_partition_state(repo, key), {}, saved) is None  # read again next time



def test_an_unreadable_scalar_source_leaves_its_series_out_not_the_ensemble(built):
    """Runs last: it deletes a source file behind the store's back. A partition whose scalars must be
    read again (its view changed) but cannot be gives no series; the ensemble is still built."""
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.core.sea_level import PartitionVolume
    from ismip6_assets.core.sea_level_store import _ensemble_scalars

    from ismip6_assets.core.index import list_archive
    from ismip6_assets.core.store import commit_partition
    from ismip6_assets.core.virtualize import virtualize_rows

    archive, store, _ = built
    source = parse_location(str(archive), "source")
    repo = open_repository(parse_location(str(store), "store"), source)
    key = PartitionKey("NCAR", "CISM", "exp05")
    lim = archive / "Projection-AIS/NCAR/CISM/exp05/lim_AIS_NCAR_CISM_exp05.nc"
    volume = PartitionVolume(key, "volume", "a view the ensemble was not built from", None)

    def ensemble_scalars():
        return _ensemble_scalars(repo.readonly_session("main"), ["exp05"], {str(key): volume}, {}, "synchronous")[str(key)]

    # Decoded as it was virtualized, lim is inline in the view: its source is not read again.
    assert "lim" in ensemble_scalars()
    # Committed again as references (not decoded, as for a series beyond its file's head), then gone.
    files = virtualize_rows(list_archive(source).for_partition(str(key)).to_dict("records"), source).files
    for vf in files:
        vf.series = None
    commit_partition(repo, key, files, [], [], rebuild_view=True)
    lim.unlink()
    assert ensemble_scalars() == {}


def test_block_fetches_raise_zarr_concurrency_only_within():
    import zarr

    from ismip6_assets.core.sea_level import BLOCK_FETCHES_AT_ONCE, block_fetches

    before = zarr.config.get("async.concurrency")
    assert before < BLOCK_FETCHES_AT_ONCE  # else the setting would change nothing
    with block_fetches():
        assert zarr.config.get("async.concurrency") == BLOCK_FETCHES_AT_ONCE
    assert zarr.config.get("async.concurrency") == before


def test_the_area_factor_is_projs_at_every_cell_of_a_grid_off_the_pole():
    """Catches an area factor that is not each cell's (computed once a distance from the pole, it
    must still be PROJ's value at that cell, on a grid that is neither square nor centred)."""
    from ismip6_assets.core.sea_level import area_factor
    from tests.sea_level_support import af2_by_pyproj

    x, y = np.arange(-2_000_000.0, 400_000.0, 16_000.0), np.arange(12_345.0, 1_612_345.0, 8_000.0)
    got = area_factor(x, y)
    assert got.dims == ("y", "x") and got.shape == (len(y), len(x))
    np.testing.assert_allclose(got.values, af2_by_pyproj(x, y), rtol=1e-9)
    assert got.values.min() < 1.0 < got.values.max()  # true scale at 71 S crosses the grid


def test_the_views_fields_are_unshuffled_by_numpy_and_read_the_sources_values(built):
    """Catches a shuffle undone wrong (the sources are NetCDF4 with HDF5's shuffle and zlib), and
    the NumPy codec leaking to reads outside the sea level's (zarr's own stays the default)."""
    import zarr

    from ismip6_assets.core import unshuffle
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.core.sea_level import open_view

    archive, store, _ = built
    session = open_plain_repo(store, archive).readonly_session("main")
    partition = PartitionKey("NCAR", "CISM", "exp05")  # chunked with zlib and shuffle (JPL1_ISSM is contiguous)
    view = open_view(session, partition, None)
    for name in ("lithk", "sftgif"):
        (source,) = archive.glob(f"**/{name}_AIS_NCAR_CISM_exp05.nc")
        with xr.open_dataset(source, decode_times=False) as plain:
            np.testing.assert_array_equal(view[name].isel(time=slice(0, 5)).values, plain[name].isel(time=slice(0, 5)).values)
    with zarr.config.set(unshuffle.selected()):
        inside = zarr.open_array(session.store, path=f"{partition.group}/lithk/lithk", mode="r")
    outside = zarr.open_array(session.store, path=f"{partition.group}/lithk/lithk", mode="r")
    assert any(isinstance(c, unshuffle.Shuffle) for c in inside.metadata.codecs)
    assert not any(isinstance(c, unshuffle.Shuffle) for c in outside.metadata.codecs)
