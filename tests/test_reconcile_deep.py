"""The check's deep mode: sampled chunk refs read through the store against the source, and the
check that compared nothing."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from ismip6_assets.defs.checks import reconciliation
from ismip6_assets.definitions import ASSETS, build_resources
from ismip6_assets.cli.runs import run_partition
from ismip6_assets.core.sample_archive import sample_dataset, write_netcdf
from ismip6_assets.core.verify import sample_chunks
from tests.conftest import N_TIMES, open_plain_repo

KEY = "DOE/MALI/expA1"  # contiguous NetCDF4


def check(archive, instance, key, **config) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [*ASSETS, reconciliation], partition_key=key, instance=instance, resources=build_resources(archive),
        selection=dg.AssetSelection.assets("file_index") | dg.AssetSelection.checks(reconciliation), raise_on_error=False,
        run_config={"ops": {"icechunk_commit_reconciliation": {"config": config}}},
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


@pytest.fixture
def committed(archive, instance):
    instance.add_dynamic_partitions("model_experiment", [KEY])
    assert run_partition(archive, instance, KEY).status == "OK"
    return archive


def test_sampled_chunks_are_first_middle_and_last():
    assert sample_chunks((5, 191, 191), (1, 191, 191)) == [(0, 0, 0), (2, 0, 0), (4, 0, 0)]
    assert sample_chunks((3,), (3,)) == [(0,)]


@pytest.mark.slow
def test_bytes_rewritten_under_the_same_fingerprint_fail_only_the_deep_check(committed, archive_dir, instance):
    # Rewritten with another layout (compressed chunks), padded to the old size, the old mtime put
    # back (as `cp -p` or `rsync -t` would): the fingerprint cannot tell, the stored refs now point
    # at other bytes. (A rewrite with the same layout moves no byte ranges: its refs stay right.)
    path = archive_dir / "Projection-AIS" / KEY / "lithk_AIS_DOE_MALI_expA1.nc"
    before = path.stat()
    path.unlink()
    write_netcdf(sample_dataset("lithk", "other values", N_TIMES), path, "chunked")
    assert path.stat().st_size < before.st_size
    with open(path, "ab") as f:
        f.write(b"\0" * (before.st_size - path.stat().st_size))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    deep = check(committed, instance, KEY)
    assert not deep.passed and deep.severity == dg.AssetCheckSeverity.ERROR
    assert deep.metadata["stale"].value == 0 and deep.metadata["bad_refs"].value == 1
    assert "DOE_MALI/expA1/lithk/lithk" in deep.metadata["findings"].value
    assert "other values than the source" in deep.metadata["findings"].value
    # Configurable: with the deep mode off, the fingerprints alone look fine.
    shallow = check(committed, instance, KEY, deep="never")
    assert shallow.passed and shallow.metadata["deep_groups"].value == 0
    # The repair the check's description names: a new fingerprint, and the next run rewrites the group.
    assert "touch the file" in deep.description
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns - 10**10))
    assert run_partition(committed, instance, KEY).status == "OK"


@pytest.mark.slow
def test_a_ref_past_the_end_of_its_file_is_found(committed, archive_dir, store_dir, instance):
    assert check(committed, instance, KEY).metadata["deep_chunks"].value >= 3  # every group read
    source = archive_dir / "Projection-AIS" / KEY / "orog_AIS_DOE_MALI_expA1.nc"
    repo = open_plain_repo(store_dir, archive_dir)
    session = repo.writable_session("main")
    size = source.stat().st_size
    session.store.set_virtual_ref("DOE_MALI/expA1/orog/orog/c/0/0/0", f"file://{os.path.realpath(source)}", offset=size - 100, length=4096)
    session.commit("a reference that runs past the end of its file")

    evaluation = check(committed, instance, KEY, deep="always")
    assert not evaluation.passed and evaluation.metadata["bad_refs"].value == 1
    findings = evaluation.metadata["findings"].value
    assert "DOE_MALI/expA1/orog/orog" in findings and "unreadable" in findings


def test_a_check_that_compared_nothing_fails(archive, instance):
    key = "DOE/MALI/expA9"  # a registered partition whose folder holds no files
    instance.add_dynamic_partitions("model_experiment", [key])
    evaluation = check(archive, instance, key)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["indexed"].value == 0 and "no_files" in evaluation.metadata["findings"].value


@pytest.mark.slow
def test_a_source_zeroed_in_place_is_a_finding_not_a_crashed_check(committed, archive_dir, instance):
    path = archive_dir / "Projection-AIS" / KEY / "orog_AIS_DOE_MALI_expA1.nc"
    before = path.stat()
    path.write_bytes(b"\0" * before.st_size)  # no longer opens as NetCDF
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    evaluation = check(committed, instance, KEY)
    assert not evaluation.passed and evaluation.metadata["bad_refs"].value == 1
    assert "DOE_MALI/expA1/orog" in evaluation.metadata["findings"].value


@pytest.mark.slow
def test_a_raw_garbage_time_and_a_km_grid_are_errors_naming_both_groups(committed, archive_dir, store_dir, instance):
    import numpy as np
    import zarr

    assert check(committed, instance, KEY).passed  # the fixes stored dates and metres
    # By hand, what the store held before issue 22: lim's time as its file's raw garbage (units
    # moved aside, as undecoded times were), orog's x/y in km as some files write them.
    session = open_plain_repo(store_dir, archive_dir).writable_session("main")
    time = zarr.open_array(session.store, path="DOE_MALI/expA1/lim/time", mode="r+", zarr_format=3)
    garbage = np.array([2.31e-310, 1.71e219, np.nan, 365.0, 730.0])[: time.shape[0]]
    time[:] = garbage
    time.attrs.put({"ismip6_source_time_units": "days since 2015-01-01"})
    for axis in ("x", "y"):
        coordinate = zarr.open_array(session.store, path=f"DOE_MALI/expA1/orog/{axis}", mode="r+", zarr_format=3)
        coordinate[:] = coordinate[:] / 1000
        coordinate.attrs.put({**coordinate.attrs.asdict(), "units": "km"})
    session.commit("a raw garbage time and a km grid, by hand")

    evaluation = check(committed, instance, KEY)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    findings = evaluation.metadata["findings"].value
    assert evaluation.metadata["stale"].value == 0, findings
    assert "other values than the source" not in findings  # the data still read right
    assert "| bad_time | DOE_MALI/expA1/lim |" in findings and "time has no units" in findings
    assert "| bad_grid | DOE_MALI/expA1/orog |" in findings and "units 'km', not metres" in findings
    assert "DOE_MALI/expA1/lithk" not in findings and "combined/" not in findings, findings  # the view over lim: same cause
    assert "delete the group" in evaluation.description
