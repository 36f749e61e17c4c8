"""The analysis-ready view of each partition, read as a user would and compared with the source files.

Real NetCDF files, one per time convention and chunk layout the archive has, go through the library
pipeline (`list_archive` → `virtualize_rows` → `commit_partition`, as the assets do); the view is opened
with plain icechunk + xarray and compared year by year with `xr.open_dataset` on each source file: the
expected model year of every source step is written down here, from the convention, not computed by
the code under test. A year the source lacks must read NaN.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import Location, parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.reconcile import commit_plan, store_diff
from ismip6_assets.core.sample_archive import grid
from ismip6_assets.core.store import commit_partition, open_repository
from ismip6_assets.core.store_state import read_partition_state, read_store_state
from ismip6_assets.core.views import view_group
from ismip6_assets.core.virtualize import virtualize_rows
from tests.conftest import open_plain_repo

N = 31
DAYS = {"units": "days since 2015-01-01", "calendar": "365_day"}
CONVENTIONS = PartitionKey("AWI", "PISM1", "exp05")
CONTIGUOUS = PartitionKey("JPL1", "ISSM", "expB2")
OTHER_GRID = PartitionKey("ULB", "fETISh_16km", "exp05")

# variable: (partition, time stamps (days since 2015-01-01, 365_day), model years they stand for, options)
CASES = {
    "lithk": (CONVENTIONS, [365, 730, 1095], [2015, 2016, 2017], {}),  # ST on Jan 1 of Y+1
    "orog": (CONVENTIONS, [364, 729, 1094], [2015, 2016, 2017], {}),  # ST on Dec 31 of Y
    "topg": (CONVENTIONS, [730, 1095], [2016, 2017], {}),  # ST, fewer years than the view
    "acabf": (CONVENTIONS, [182.5, 547.5, 912.5, 1277.5], [2015, 2016, 2017, 2018], {}),  # FL mid-year
    # FL stamped at the end of each year, with bounds: the bounds say which year.
    "libmassbffl": (CONVENTIONS, [365, 730, 1095], [2015, 2016, 2017], {"bounds": True}),
    "xvelmean": (CONVENTIONS, [365, 730, 1095, 1460], [2015, 2016, 2017, 2018], {"chunk": 2}),  # 2-step chunks from the view's start
    "yvelmean": (CONVENTIONS, [730, 1095, 1460], [2016, 2017, 2018], {"chunk": 2}),  # 2-step chunks one year off
    "lim": (CONVENTIONS, [730, 1095, 1460], [2016, 2017, 2018], {"scalar": True}),  # one chunk that starts a year in
    "limnsw": (CONVENTIONS, [365, 730, 1095, 1460], [2015, 2016, 2017, 2018], {"scalar": True}),  # one chunk, the whole axis
    "hfgeoubed": (CONVENTIONS, None, None, {}),  # no time dimension
}
CONTIGUOUS_CASES = {
    "lithk": (CONTIGUOUS, [365, 730, 1095], [2015, 2016, 2017], {"contiguous": True}),
    "orog": (CONTIGUOUS, [365, 730, 1095], [2015, 2016, 2017], {"format": "NETCDF3_CLASSIC"}),
}
GRID_CASES = {
    "lithk": (OTHER_GRID, [365, 730], [2015, 2016], {"n": 61}),
    "orog": (OTHER_GRID, [365, 730], [2015, 2016], {"n": 61}),
    "acabf": (OTHER_GRID, [182.5, 547.5], [2015, 2016], {}),  # on the 31-point grid: left out
}
ALL_CASES = [(v, *c) for cases in (CASES, CONTIGUOUS_CASES, GRID_CASES) for v, c in cases.items()]


def _path(root: Path, key: PartitionKey, variable: str) -> Path:
    return root / "Projection-AIS" / key.institution / key.model / key.experiment / f"{variable}_AIS_{key.institution}_X_{key.experiment}.nc"


def write_case(path: Path, variable: str, time, options: dict) -> None:
    n = options.get("n", N)
    rng = np.random.default_rng(len(variable) + n)
    coords = {"x": ("x", grid(n), {"units": "m"}), "y": ("y", grid(n), {"units": "m"})}
    if time is None:
        values = rng.uniform(0.01, 0.1, (n, n)).astype("float32")
        ds = xr.Dataset({variable: (("y", "x"), values, {"units": "W m-2"})}, coords=coords)
    elif options.get("scalar"):
        ds = xr.Dataset({variable: ("time", 2.6e19 + np.arange(len(time)) * 1e16, {"units": "kg"})})
    else:
        values = rng.uniform(100, 3000, (len(time), n, n)).astype("float32")
        values[:, :3, :3] = np.nan  # the ocean: NaN in the source must stay NaN
        ds = xr.Dataset({variable: (("time", "y", "x"), values, {"units": "m"})}, coords=coords)
    if time is not None:
        attrs = DAYS | ({"bounds": "time_bnds"} if options.get("bounds") else {})
        ds = ds.assign_coords(time=("time", np.asarray(time, dtype="float64"), attrs))
        if options.get("bounds"):
            edges = np.asarray(time, dtype="float64")
            ds["time_bnds"] = (("time", "nv"), np.stack([edges - 365, edges], axis=1))
    encoding = {name: {"_FillValue": None} for name in ds.variables if name != variable}
    fmt = options.get("format", "NETCDF4")
    if fmt == "NETCDF4":
        if options.get("contiguous"):
            encoding[variable] = {"contiguous": True}
        elif options.get("scalar"):
            encoding[variable] = {"zlib": True, "chunksizes": (len(time),)}
        elif time is not None:
            encoding[variable] = {"zlib": True, "chunksizes": (options.get("chunk", 1), n, n)}
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, format=fmt, engine="netcdf4", encoding=encoding)


def commit_archive(archive: Path | Location, store: Path | Location) -> None:
    """The library pipeline, as the assets run it: listing, virtualization, one commit per partition
    (also for stored partitions whose folder is gone). Paths or locations (gs:// on the emulator)."""
    source = archive if isinstance(archive, Location) else parse_location(str(archive), "source")
    store = store if isinstance(store, Location) else parse_location(str(store), "store")
    repo = open_repository(store, source)
    listing = list_archive(source)
    for key in sorted(set(listing.partitions) | set(read_store_state(repo))):
        rows = listing.for_partition(key)
        partition = PartitionKey.parse(key)
        diff = store_diff(partition, rows, read_partition_state(repo, partition))
        result = virtualize_rows(rows[rows["url"].isin(diff.to_write)].to_dict("records"), source)
        plan = commit_plan(diff, result.files, result.failures)
        commit_partition(repo, partition, plan.write, plan.remove, plan.failures, plan.remove_partition, plan.rebuild_view)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    archive, store = root / "archive", root / "store"
    for variable, key, time, _years, options in ALL_CASES:
        write_case(_path(archive, key, variable), variable, time, options)
    commit_archive(archive, store)
    return archive, store


def open_view(store: Path, archive: Path, key: PartitionKey) -> xr.Dataset:
    repo = open_plain_repo(store, archive)
    return xr.open_zarr(repo.readonly_session("main").store, group=view_group(key), consolidated=False)


def assert_matches_source(view: xr.Dataset, path: Path, variable: str, years: list[int] | None) -> None:
    """Year by year equal to the source (NaN where the source is NaN), NaN in every year it lacks."""
    source = xr.open_dataset(path)[variable].load()
    if years is None:
        np.testing.assert_array_equal(view[variable].values, source.values)
        assert "time" not in view[variable].dims
        return
    for step, year in enumerate(view["year"].values.tolist()):
        got = view[variable].isel(time=step).values
        if year in years:
            np.testing.assert_array_equal(got, source.isel(time=years.index(year)).values, err_msg=f"{variable} {year}")
        else:
            assert np.isnan(got).all(), f"{variable}: year {year} is not in the source, yet reads {got.ravel()[:3]}"


@pytest.mark.parametrize("variable", [v for v in CASES if v != "yvelmean"])
def test_each_time_convention_lands_on_its_model_years(built, variable):
    archive, store = built
    view = open_view(store, archive, CONVENTIONS)
    assert view["year"].values.tolist() == [2015, 2016, 2017, 2018]
    # One strictly increasing time a year: Jul 1, bounded by the year's Jan 1 and the next one's.
    assert [str(t)[:10] for t in view["time"].values] == ["2015-07-01", "2016-07-01", "2017-07-01", "2018-07-01"]
    assert [str(t)[:10] for t in view["time_bnds"].values[0]] == ["2015-01-01", "2016-01-01"]
    assert "ismip6_time_rule" in view.attrs and "Jul 1" in view.attrs["ismip6_time_rule"]
    key, _time, years, _options = CASES[variable]
    assert_matches_source(view, _path(archive, key, variable), variable, years)


def test_scalar_series_are_inline_and_a_field_that_does_not_fit_is_left_out_with_its_reason(built):
    """lim's chunks do not fit the axis and limnsw's do: both were decoded from their file's head
    as they were virtualized, so both are one inline chunk (one request a series, not one a step)."""
    archive, store = built
    view = open_view(store, archive, CONVENTIONS)
    assert "yvelmean" not in view and view.attrs["ismip6_left_out"] == {
        "yvelmean": "time chunks of 2 steps do not line up with the view's years"
    }
    assert view.attrs["ismip6_view_inline"] == ["lim", "limnsw"]
    group = zarr.open_group(open_plain_repo(store, archive).readonly_session("main").store, path=view_group(CONVENTIONS), mode="r")
    assert group["limnsw"].nchunks == 1
    assert sorted(view.attrs["ismip6_view_variables"]) == sorted(v for v in CASES if v != "yvelmean")
    assert view.attrs["ismip6_view_years"] == [2015, 2018]
    # The partition's protocol facts, from the packaged experiment table.
    assert view.attrs["scenario"] == "RCP 8.5" and view.attrs["control_experiment"] == "ctrl_proj_std" and view.attrs["tier"] == 1


@pytest.mark.parametrize("variable", list(CONTIGUOUS_CASES))
def test_contiguous_arrays_through_their_per_step_split(built, variable):
    archive, store = built
    assert_matches_source(open_view(store, archive, CONTIGUOUS), _path(archive, CONTIGUOUS, variable), variable, CONTIGUOUS_CASES[variable][2])


def test_a_partition_on_another_grid_keeps_its_grid_and_leaves_out_the_odd_one(built):
    archive, store = built
    view = open_view(store, archive, OTHER_GRID)
    assert view.sizes["x"] == view.sizes["y"] == 61
    for variable in ("lithk", "orog"):
        assert_matches_source(view, _path(archive, OTHER_GRID, variable), variable, GRID_CASES[variable][2])
    assert view.attrs["ismip6_left_out"] == {"acabf": "grid 31×31 differs from the view's 61×61"}


def _refs(store, path: str) -> dict[tuple[int, ...], tuple[str, int, int]]:
    async def read():
        out = {}
        async for coords, _kinds, locations, offsets, lengths, _inlined in store.array_chunk_iterator(path):
            for c, loc, off, length in zip(coords.tolist(), locations, offsets.tolist(), lengths.tolist(), strict=True):
                out[tuple(c)] = (loc, off, length)
        return out

    return asyncio.run(read())


def test_the_view_holds_the_same_references_as_the_variable_groups(built):
    archive, store = built
    session_store = open_plain_repo(store, archive).readonly_session("main").store
    first_year = 2015
    for variable, key, _time, years, options in ALL_CASES:
        attrs = json.loads(asyncio.run(session_store.get(f"{view_group(key)}/zarr.json", _prototype())).to_bytes())["attributes"]
        if variable not in attrs["ismip6_view_variables"] or variable in attrs["ismip6_view_inline"]:
            continue
        group = _refs(session_store, f"{key.group}/{variable}/{variable}")
        view = _refs(session_store, f"{view_group(key)}/{variable}")
        assert group and set(view.values()) == set(group.values()), variable
        chunk = options.get("chunk", 4 if options.get("scalar") else 1)
        for coords, ref in group.items():  # each source chunk sits at its model year's chunk
            expected = coords if years is None else ((years[coords[0] * chunk] - first_year) // chunk, *coords[1:])
            assert view[expected] == ref, (variable, coords)


def _prototype():
    from zarr.core.buffer import default_buffer_prototype

    return default_buffer_prototype()


def test_a_changed_file_rebuilds_the_view_from_the_stored_groups(built, tmp_path):
    archive_dir, store_dir = built
    archive, store = tmp_path / "archive", tmp_path / "store"
    shutil.copytree(archive_dir, archive)
    commit_archive(archive, store)
    # One more year of lithk (2015-2019): the view's axis grows; every other field is read back
    # from its stored group and must still match its source.
    write_case(_path(archive, CONVENTIONS, "lithk"), "lithk", [365, 730, 1095, 1460, 1825], {})
    commit_archive(archive, store)
    view = open_view(store, archive, CONVENTIONS)
    assert view["year"].values.tolist() == [2015, 2016, 2017, 2018, 2019]
    assert_matches_source(view, _path(archive, CONVENTIONS, "lithk"), "lithk", [2015, 2016, 2017, 2018, 2019])
    for variable in ("acabf", "lim", "limnsw", "libmassbffl", "hfgeoubed"):
        assert_matches_source(view, _path(archive, CONVENTIONS, variable), variable, CASES[variable][2])
    # Re-rendered from its stored group (no values in hand), a series that fits keeps its references;
    # one that does not (lim) is read back through them for its inline copy.
    assert view.attrs["ismip6_view_inline"] == ["lim"]
    repo = open_repository(parse_location(str(store), "store"), parse_location(str(archive), "source"))
    state = read_partition_state(repo, CONVENTIONS)
    assert state.view_sources == {v: g.fingerprint for v, g in state.groups.items()}


@pytest.mark.slow
def test_a_view_lost_or_stale_is_error_named_requested_and_repaired_and_goes_with_its_folder(built, tmp_path, capsys):
    import dagster as dg
    import zarr

    from ismip6_assets.cli import main as ismip6
    from ismip6_assets.defs.resources import ArchiveResource
    from ismip6_assets.cli.runs import run_archive
    from ismip6_assets.defs.sensors import requested_partitions
    from tests.test_repair import tick

    archive, store = tmp_path / "archive", tmp_path / "store"
    shutil.copytree(built[0], archive)
    resource = ArchiveResource(source_url=str(archive), store_url=str(store))
    with dg.instance_for_test() as instance:
        assert {o.status for o in run_archive(resource, instance, in_process=True)} == {"OK"}
        cursor = tick(resource, instance, None)[0].cursor
        session = open_plain_repo(store, archive).writable_session("main")
        root = zarr.open_group(session.store, mode="a")
        del root[view_group(CONTIGUOUS)]  # lost by hand
        root[view_group(OTHER_GRID)].attrs["ismip6_view_sources"] = {"lithk": "another file"}  # stale
        session.commit("damage two views by hand")

        result, _added = tick(resource, instance, cursor)
        assert set(requested_partitions(result)) == {str(CONTIGUOUS), str(OTHER_GRID)}
        capsys.readouterr()
        assert ismip6(["reconcile", "--source", str(archive), "--store", str(store)]) == 1
        out = capsys.readouterr().out
        assert f"view_missing: {view_group(CONTIGUOUS)}" in out and f"view_stale: {view_group(OTHER_GRID)}" in out

        outcomes = run_archive(resource, instance, in_process=True)
        assert {o.partition: (o.status, o.ran) for o in outcomes if o.ran} == {str(CONTIGUOUS): ("OK", True), str(OTHER_GRID): ("OK", True)}
        assert_matches_source(open_view(store, archive, CONTIGUOUS), _path(archive, CONTIGUOUS, "lithk"), "lithk", [2015, 2016, 2017])

        shutil.rmtree(archive / "Projection-AIS" / CONTIGUOUS.institution)  # every file of the partition gone
        commit_archive(archive, store)
        exp = zarr.open_group(open_plain_repo(store, archive).readonly_session("main").store, mode="r")
        assert CONTIGUOUS.model_group not in exp and f"combined/{CONTIGUOUS.model_group}" not in exp and view_group(OTHER_GRID) in exp


def test_commit_metadata_shows_the_views_years_variables_and_what_was_left_out_and_why(built):
    from ismip6_assets.defs.assets.metadata import view_metadata
    from ismip6_assets.core.view_writer import read_view

    archive, store = built
    view = read_view(open_plain_repo(store, archive).readonly_session("main").store, CONVENTIONS)
    metadata = view_metadata(view)
    assert metadata["view"] == "combined/AWI_PISM1/exp05" and metadata["view_years"] == "2015-2018" and metadata["view_variables"] == 9
    assert [r.data for r in metadata["view_left_out"].records] == [
        {"variable": "yvelmean", "reason": "time chunks of 2 steps do not line up with the view's years"}
    ]
    assert metadata["view_inline"] == "lim, limnsw" and view.variable_years["topg"] == (2016, 2017)


def test_cf_tools_find_the_views_crs(built):
    import cf_xarray  # noqa: F401 - registers the .cf accessor

    archive, store = built
    view = open_view(store, archive, CONVENTIONS)
    assert view["lithk"].attrs["grid_mapping"] == "polar_stereographic"
    assert view.cf["lithk"].cf.grid_mapping_name == "polar_stereographic"


def test_the_deep_check_samples_the_view_and_finds_a_wrong_reference_in_it(built, tmp_path):
    from ismip6_assets.core.reconcile import partition_diff
    from ismip6_assets.core.verify import SamplePolicy, sample_chunks, verify_partition

    archive, store = tmp_path / "archive", tmp_path / "store"
    shutil.copytree(built[0], archive)
    commit_archive(archive, store)
    source = parse_location(str(archive), "source")
    repo = open_repository(parse_location(str(store), "store"), source)
    for key in (CONVENTIONS, CONTIGUOUS, OTHER_GRID):
        _rows, diff = partition_diff(source, parse_location(str(store), "store"), key, repo)
        verified = verify_partition(repo, source, read_partition_state(repo, key), diff.ok)
        assert verified.findings == [] and any(r["item"].startswith("combined/") for r in verified.read), (key, verified.read)

    # Every field of one view gets its last chunk pointed at the first bytes of its file.
    session = open_plain_repo(store, archive).writable_session("main")
    for variable in CONTIGUOUS_CASES:
        path = f"{view_group(CONTIGUOUS)}/{variable}"
        array = zarr_array(session.store, path)
        key = f"{path}/c/" + "/".join(map(str, sample_chunks(array.shape, array.chunks, 1)[0]))
        length = int(asyncio.run(session.store.getsize(key)))
        session.store.set_virtual_ref(key, f"file://{_path(archive, CONTIGUOUS, variable).resolve()}", offset=0, length=length)
    session.commit("sabotage the view")
    _rows, diff = partition_diff(source, parse_location(str(store), "store"), CONTIGUOUS, repo)
    verified = verify_partition(repo, source, read_partition_state(repo, CONTIGUOUS), diff.ok, SamplePolicy(max_variables=1))
    assert [f["item"].split("/")[0] for f in verified.findings] == ["combined"], verified.findings
    assert "reads other values than the source" in verified.findings[0]["reason"]


def zarr_array(store, path: str):
    import zarr

    return zarr.open_array(store, path=path, mode="r", zarr_format=3)


@pytest.mark.parametrize("variable", ["lithk", "topg", "xvelmean", "limnsw"])
@pytest.mark.parametrize("axis", [(2015, 2018), (2013, 2020), (2011, 2020)])
def test_the_numpy_shift_is_virtualizarrs_lazy_reindex(built, variable, axis):
    """The fast path for consecutive years builds what xarray's reindex on the ManifestArray builds."""
    from ismip6_assets.core.view_writer import field_of_file
    from ismip6_assets.core.views import _shift, model_years

    archive, _store = built
    source = parse_location(str(archive), "source")
    rows = list_archive(source, CONVENTIONS).rows
    (vf,) = virtualize_rows(rows[rows["variable"] == variable].to_dict("records"), source).files
    field = field_of_file(vf)
    years, years_axis = model_years(field), np.arange(axis[0], axis[1] + 1)
    from virtualizarr.manifests import ManifestArray

    try:
        metadata, manifest = _shift(field, years, years_axis)
    except NotImplementedError:
        metadata = None
    ds = xr.Dataset({"v": xr.Variable(field.dims, ManifestArray(metadata=field.metadata, chunkmanifest=field.manifest))}, coords={"time": ("time", years)})
    try:
        reindexed = ds.reindex(time=years_axis)["v"].data
    except NotImplementedError:
        assert metadata is None  # both refuse
        return
    assert metadata is not None and metadata.shape == reindexed.shape and metadata.chunks == reindexed.metadata.chunks
    for name in ("_paths", "_offsets", "_lengths"):
        np.testing.assert_array_equal(getattr(manifest, name), getattr(reindexed.manifest, name))


def test_the_axis_is_the_union_of_the_variables_years_with_no_other_years(tmp_path):
    """lithk 2015-2016 and acabf 2020: the view holds 2015, 2016 and 2020, not the years between."""
    archive, store = tmp_path / "archive", tmp_path / "store"
    key = PartitionKey("VUB", "AISMPALEO", "exp05")
    write_case(_path(archive, key, "lithk"), "lithk", [365, 730], {})  # ST: 2015, 2016
    write_case(_path(archive, key, "acabf"), "acabf", [5 * 365 + 182.5], {})  # FL mid-2020
    commit_archive(archive, store)
    view = open_view(store, archive, key)
    assert view["year"].values.tolist() == [2015, 2016, 2020]
    assert [str(t)[:10] for t in view["time"].values] == ["2015-07-01", "2016-07-01", "2020-07-01"]
    assert_matches_source(view, _path(archive, key, "lithk"), "lithk", [2015, 2016])
    assert_matches_source(view, _path(archive, key, "acabf"), "acabf", [2020])
    assert view.attrs["ismip6_left_out"] == {}


def open_variable_group(store: Path, archive: Path, key: PartitionKey, variable: str) -> xr.Dataset:
    repo = open_plain_repo(store, archive)
    return xr.open_zarr(repo.readonly_session("main").store, group=key.variable_group(variable), consolidated=False)


TIMED_CASES = [c for c in ALL_CASES if c[2] is not None]


@pytest.mark.parametrize("variable, key, time, years, options", TIMED_CASES, ids=[f"{c[1].model}-{c[0]}" for c in TIMED_CASES])
def test_a_groups_year_is_the_views_year_for_the_same_step(built, variable, key, time, years, options):
    """`sel(year=Y)` picks the same step in a variable group as in the view; `time` stays the file's stamp."""
    archive, store = built
    group, view = open_variable_group(store, archive, key, variable), open_view(store, archive, key)
    assert group["year"].values.tolist() == years  # written down above from the convention
    assert group["time"].attrs.get("bounds") == "time_bnds" and group["year"].dims == ("time",)
    # The raw stamp: 365_day days since 2015-01-01, kept as the file has it (decoded to a date).
    assert [(t.year, t.month, t.day) for t in pd_dates(group["time"].values)] == [stamp_of(days) for days in time]
    by_year = group.swap_dims(time="year")
    np.testing.assert_array_equal(by_year["time_bnds"].values, view.swap_dims(time="year")["time_bnds"].sel(year=years).values)
    if variable not in view.attrs["ismip6_view_variables"]:
        return
    view_by_year = view.swap_dims(time="year")
    for year in years:
        np.testing.assert_array_equal(by_year[variable].sel(year=year).values, view_by_year[variable].sel(year=year).values)


def pd_dates(values):
    import pandas as pd

    return [pd.Timestamp(v) for v in values]


def stamp_of(days: float) -> tuple[int, int, int]:
    """(Y, M, D) of `days` since 2015-01-01 on the 365_day calendar."""
    year, day = 2015 + int(days // 365), int(days % 365)
    month_lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    month = 0
    while day >= month_lengths[month]:
        day -= month_lengths[month]
        month += 1
    return year, month + 1, day + 1


def test_a_left_out_variable_adds_no_year_to_the_axis_and_keeps_its_own_years_in_the_catalog(tmp_path):
    """lithk 2015-2016 fits; xvelmean's 2-step chunks start a year in (2016-2019) and are left out: the
    axis is lithk's 2015-2016, not 2015-2019 (four years on which every field would read NaN), and
    the catalog still says xvelmean covers 2016-2019."""
    from ismip6_assets.core.catalog import build_catalog

    archive, store = tmp_path / "archive", tmp_path / "store"
    key = PartitionKey("UTAS", "ElmerIce", "ctrl_proj_open")
    write_case(_path(archive, key, "lithk"), "lithk", [365, 730], {})
    write_case(_path(archive, key, "xvelmean"), "xvelmean", [730, 1095, 1460, 1825], {"chunk": 2})
    commit_archive(archive, store)
    view = open_view(store, archive, key)
    assert list(view.attrs["ismip6_left_out"]) == ["xvelmean"] and view.attrs["ismip6_view_variables"] == ["lithk"]
    assert view["year"].values.tolist() == [2015, 2016] and view.attrs["ismip6_view_years"] == [2015, 2016]
    assert_matches_source(view, _path(archive, key, "lithk"), "lithk", [2015, 2016])

    store_location, source = parse_location(str(store), "store"), parse_location(str(archive), "source")
    catalog, _snapshot, _reread = build_catalog(open_repository(store_location, source), store_location)
    rows = catalog.set_index("variable")[["first_year", "last_year", "view"]].astype(object)
    rows = rows.where(rows.notna(), None)
    assert rows.loc["xvelmean"].tolist() == [2016, 2019, None]
    assert rows.loc["lithk"].tolist() == [2015, 2016, view_group(key)]


def test_a_series_whose_inline_copy_cannot_be_read_adds_no_year_either(tmp_path):
    """lim (2016-2018, one chunk starting a year in: stored inline) was not decoded as it was
    virtualized (as for a series beyond its file's head) and is deleted before the commit, so its
    values cannot be read through its references: it is left out, and the axis is lithk's."""
    archive, store = tmp_path / "archive", tmp_path / "store"
    key = PartitionKey("UTAS", "ElmerIce", "exp05")
    write_case(_path(archive, key, "lithk"), "lithk", [365, 730], {})
    write_case(_path(archive, key, "lim"), "lim", [730, 1095, 1460], {"scalar": True})
    source = parse_location(str(archive), "source")
    repo = open_repository(parse_location(str(store), "store"), source)
    rows = list_archive(source).for_partition(str(key))
    result = virtualize_rows(rows.to_dict("records"), source)
    for vf in result.files:
        vf.series = None
    _path(archive, key, "lim").unlink()
    commit_partition(repo, key, result.files, [], [])
    view = open_view(store, archive, key)
    assert view["year"].values.tolist() == [2015, 2016] and view.attrs["ismip6_view_variables"] == ["lithk"]
    assert view.attrs["ismip6_left_out"]["lim"].startswith("its values could not be read for the inline copy")


def test_series_decoded_at_virtualization_equal_what_the_store_reads_netcdf4_and_3(archive_dir, tmp_path):
    """Every time-only series of the sample archive (NetCDF4 with shuffle and zlib, NetCDF3 records
    big-endian) decoded from its file's head equals the stored group read through its references,
    dtype and all; each lands in its partition's view as one inline chunk."""
    store = tmp_path / "store"
    commit_archive(archive_dir, store)
    source = parse_location(str(archive_dir), "source")
    session = open_plain_repo(store, archive_dir).readonly_session("main")
    formats = set()
    for key in list_archive(source).partitions:
        for vf in virtualize_rows(list_archive(source).for_partition(key).to_dict("records"), source).files:
            if vf.dataset[vf.variable].dims != ("time",):
                assert vf.series is None
                continue
            stored = zarr.open_array(session.store, path=f"{vf.group}/{vf.variable}", mode="r")[...]
            assert vf.series is not None and vf.series.dtype == stored.dtype, vf.url
            np.testing.assert_array_equal(vf.series, stored)
            assert zarr.open_array(session.store, path=f"{view_group(PartitionKey.parse(key))}/{vf.variable}", mode="r").nchunks == 1
            formats.add(vf.file_format)
    assert formats == {"netcdf4", "netcdf3"}
