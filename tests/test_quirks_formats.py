"""NetCDF3 flavours beside NetCDF4, per-step chunks of contiguous arrays, broken files, the skip list."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from ismip6_assets.cli import main
from ismip6_assets.core.sample_quirks import BROKEN_PARTITION, FORMATS_PARTITION, QUIRK_FILES, SKIPPED_PARTITION
from tests.conftest import open_plain_repo
from tests.quirks_support import build_quirk_store, copy_partition


@pytest.fixture(scope="module")
def quirks(tmp_path_factory):
    return build_quirk_store(tmp_path_factory.mktemp("quirks"))


def _run(quirks, tmp_path, instance, partition):
    from ismip6_assets.defs.resources import ArchiveResource
    from ismip6_assets.cli.runs import run_partition

    archive = copy_partition(quirks.archive, tmp_path / "archive", partition)
    instance.add_dynamic_partitions("model_experiment", [partition])
    resource = ArchiveResource(source_url=str(archive), store_url=str(tmp_path / "store"))
    return archive, run_partition(resource, instance, partition)


MAGIC = {
    "netcdf3_classic": b"CDF\x01",
    "netcdf3_64bit_offset": b"CDF\x02",
    "netcdf3_cdf5": b"CDF\x05",
    "netcdf4_beside_netcdf3": b"\x89HDF",
}


@pytest.mark.parametrize("quirk", sorted(MAGIC))
def test_netcdf3_flavours_and_netcdf4_round_trip(quirks, quirk):
    assert quirks.path(quirk).read_bytes()[:4] == MAGIC[quirk]
    assert quirks.results[quirk].file_format == ("netcdf4" if quirk.startswith("netcdf4") else "netcdf3")
    stored, source = quirks.group(quirk), quirks.source(quirk)
    variable = next(iter(source.data_vars))
    np.testing.assert_array_equal(stored[variable].values, source[variable].values)
    np.testing.assert_array_equal(stored["x"].values, source["x"].values)


@pytest.mark.slow
def test_partition_mixing_netcdf3_and_netcdf4_commits_through_dagster(quirks, tmp_path, instance):
    _, outcome = _run(quirks, tmp_path, instance, FORMATS_PARTITION)
    assert outcome.status == "OK" and outcome.written == 4 and outcome.failures == 0


@pytest.mark.parametrize("quirk", ["contiguous_netcdf4", "contiguous_netcdf3", "grid_missing_xy_ucijpl"])
def test_contiguous_arrays_are_one_chunk_per_time_step(quirks, quirk):
    stored, source = quirks.group(quirk), quirks.source(quirk)
    variable = next(iter(source.data_vars))
    group = quirks.results[quirk].group
    session = open_plain_repo(quirks.store, quirks.archive).readonly_session("main")
    array = zarr.open_array(session.store, path=f"{group}/{variable}", mode="r")
    steps, ny, nx = source[variable].shape
    assert array.chunks == (1, ny, nx) and quirks.results[quirk].dataset[variable].data.manifest.shape_chunk_grid == (steps, 1, 1)
    # Each step read alone comes from its own byte range of the source.
    for i in range(steps):
        np.testing.assert_array_equal(stored[variable].isel(time=i).values, source[variable].isel(time=i).values)


BROKEN = {
    "broken_zero_bytes": "file is empty (0 bytes)",
    "broken_truncated_hdf5": "NetCDF4/HDF5 file is truncated",
    "broken_not_netcdf": "not a NetCDF file",
    "broken_netcdf3_records_past_eof": "NetCDF3 file is truncated",
}


@pytest.mark.slow
def test_broken_files_are_failure_records_and_the_rest_is_committed(quirks, tmp_path, instance):
    archive, outcome = _run(quirks, tmp_path, instance, BROKEN_PARTITION)
    assert outcome.status == "WARN" and outcome.written == 1 and outcome.failures == len(BROKEN)

    repo = open_plain_repo(tmp_path / "store", archive)
    exp = zarr.open_group(repo.readonly_session("main").store, path="ULB_fETISh_32km/expA1", mode="r")
    assert set(exp.group_keys()) == {"lithk"}
    import json

    errors = {r["url"].rsplit("/", 1)[-1]: r["error"] for r in json.loads(exp.attrs["ismip6_failures"])}
    for quirk, reason in BROKEN.items():
        error = errors[QUIRK_FILES[quirk].rsplit("/", 1)[-1]]
        assert error.startswith(reason) and "\n" not in error and "Traceback" not in error, (quirk, error)


@pytest.mark.slow
def test_skip_listed_files_show_as_skipped_not_missing(quirks, tmp_path, instance, archive, archive_dir):
    from ismip6_assets.core.index import list_archive
    from ismip6_assets.core.locations import parse_location
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.cli.runs import run_partition

    # A whole skip-listed folder (NCAR/CISM/expD12/): indexed, reported skipped, the check passes.
    _, outcome = _run(quirks, tmp_path, instance, SKIPPED_PARTITION)
    assert outcome.status == "OK" and outcome.written == 0 and outcome.failures == 0
    assert {f["category"]: f["item"] for f in outcome.findings} == {"skipped": "1"}

    # The known 0-byte file of the sample archive, beside files that are committed.
    key = "ULB/fETISh_16km/expA6"
    instance.add_dynamic_partitions("model_experiment", [key])
    outcome = run_partition(archive, instance, key)
    assert outcome.status == "OK" and outcome.failures == 0 and outcome.written == 4
    assert {f["category"]: f["item"] for f in outcome.findings} == {"skipped": "1"}
    rows = list_archive(parse_location(str(archive_dir), "source"), PartitionKey.parse(key)).rows
    assert [u.rsplit("/", 1)[-1] for u in rows.loc[rows["skipped"], "url"]] == ["xvelbase_AIS_ULB_fETISh_expA6.nc"]


def test_sample_archive_command_writes_the_quirk_files(tmp_path, capsys):
    assert main(["sample-archive", str(tmp_path), "--times", "2", "--quirks"]) == 0
    for relpath in QUIRK_FILES.values():
        assert (tmp_path / "Projection-AIS" / relpath).exists(), relpath
    assert (tmp_path / "Projection-AIS/AWI/PISM1/exp05").is_dir()  # the plain sample archive too
