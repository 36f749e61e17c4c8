"""The whole graph on a local sample archive, read back with plain icechunk + xarray."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import zarr

from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.cli.runs import run_archive, run_partition
from tests.conftest import open_group, open_plain_repo


def ymd(values) -> list[tuple[int, int, int]]:
    return [(d.year, d.month, d.day) for d in (v.item() if hasattr(v, "item") else v for v in values)]


def as_dates(values) -> list[tuple[int, int, int]]:
    if np.issubdtype(np.asarray(values).dtype, np.datetime64):
        import pandas as pd

        return [(t.year, t.month, t.day) for t in pd.to_datetime(values)]
    return [(d.year, d.month, d.day) for d in values]


@pytest.mark.slow
def test_every_file_round_trips_through_the_store(archive, archive_dir, store_dir, instance):
    outcomes = run_archive(archive, instance, in_process=True)
    assert {o.status for o in outcomes} == {"OK"}, [(o.partition, o.status, o.findings) for o in outcomes]

    repo = open_plain_repo(store_dir, archive_dir)
    rows = list_archive(parse_location(str(archive_dir), "source")).rows
    checked = 0
    for row in rows[~rows["skipped"]].itertuples():
        stored = open_group(repo, row.group)
        with xr.open_dataset(row.url.removeprefix("file://"), decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as source:
            var = row.variable
            np.testing.assert_array_equal(stored[var].values, source[var].values)  # NaN-aware
            assert as_dates(stored["time"].values) == as_dates(source["time"].values)
            for axis in ("x", "y"):
                if axis in source:
                    np.testing.assert_array_equal(stored[axis].values, source[axis].values)
            assert stored.attrs["ismip6_source_url"] == row.url
        checked += 1
    assert checked == len(rows) - 1  # every file but the skip-listed 0-byte one

    # The store says where each group came from, and the index sits next to it.
    assert (store_dir / "index" / "AWI" / "PISM1" / "exp05.parquet").exists()
    # Each partition was registered with Dagster and materialized through it.
    assert set(instance.get_dynamic_partitions("model_experiment")) == {o.partition for o in outcomes}


@pytest.mark.slow
def test_rerun_of_unchanged_partition_writes_nothing(archive, store_dir, archive_dir, instance):
    key = "AWI/PISM1/exp05"
    instance.add_dynamic_partitions("model_experiment", [key])
    first = run_partition(archive, instance, key)
    assert first.written == 4 and first.commit_id
    snapshots_before = [s.id for s in open_plain_repo(store_dir, archive_dir).ancestry(branch="main")]
    second = run_partition(archive, instance, key)
    assert second.status == "OK" and second.written == 0 and second.commit_id == ""
    assert [s.id for s in open_plain_repo(store_dir, archive_dir).ancestry(branch="main")] == snapshots_before


@pytest.mark.slow
def test_corrupt_file_is_a_failure_record_and_the_rest_is_committed(archive, archive_dir, store_dir, instance):
    key = "AWI/PISM1/exp05"
    bad = archive_dir / "Projection-AIS/AWI/PISM1/exp05/orog_AIS_AWI_PISM1_exp05.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # truncated HDF5
    instance.add_dynamic_partitions("model_experiment", [key])

    outcome = run_partition(archive, instance, key)

    assert outcome.status == "WARN"
    assert outcome.written == 3 and outcome.failures == 1
    logs = list((store_dir / "failures").glob("virtualization_failures_*.json"))
    assert len(logs) == 1
    records = json.loads(logs[0].read_text())
    assert [r["url"] for r in records] == [f"file://{bad}"]
    assert {"url", "error", "institution", "model_name", "experiment", "timestamp"} <= set(records[0])
    assert records[0]["error"] and "\n" not in records[0]["error"]
    repo = open_plain_repo(store_dir, archive_dir)
    groups = set(zarr.open_group(repo.readonly_session("main").store, path="AWI_PISM1/exp05", mode="r").group_keys())
    assert groups == {"lithk", "acabf", "lim"}
    view = zarr.open_group(repo.readonly_session("main").store, path="combined/AWI_PISM1/exp05", mode="r")
    assert sorted(view.attrs["ismip6_view_variables"]) == ["acabf", "lim", "lithk"]  # the failed file is not in it
    assert any(f["category"] == "failed" for f in outcome.findings)


@pytest.mark.slow
def test_group_deleted_from_store_fails_the_check_at_error(archive, archive_dir, store_dir, instance):
    key = "DOE/MALI/expA1"
    instance.add_dynamic_partitions("model_experiment", [key])
    assert run_partition(archive, instance, key).status == "OK"

    repo = open_plain_repo(store_dir, archive_dir)
    session = repo.writable_session("main")
    del zarr.open_group(session.store, mode="a")["DOE_MALI/expA1/orog"]
    session.commit("delete a group by hand")

    from ismip6_assets.core.reconcile import partition_diff

    _, diff = partition_diff(parse_location(str(archive_dir), "s"), parse_location(str(store_dir), "t"), PartitionKey.parse(key))
    assert diff.status == "ERROR"
    assert [u.rsplit("/", 1)[-1] for u in diff.missing] == ["orog_AIS_DOE_MALI_expA1.nc"]

    # Through Dagster: the check evaluation says ERROR and names the file, before the repair.
    import dagster as dg

    from ismip6_assets.defs.checks import reconciliation
    from ismip6_assets.definitions import ASSETS, build_resources

    result = dg.materialize(
        [*ASSETS, reconciliation], partition_key=key, instance=instance, resources=build_resources(archive),
        # A check-only selection has no partitions_def in Dagster 1.13 (partitioned checks are a
        # preview), so the cheap file_index step comes along to carry the partition.
        selection=dg.AssetSelection.assets("file_index") | dg.AssetSelection.checks(reconciliation), raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "orog_AIS_DOE_MALI_expA1.nc" in evaluation.metadata["findings"].value


@pytest.mark.slow
def test_two_files_for_one_group_are_reported_and_neither_replaces_what_is_stored(archive, archive_dir, store_dir, instance):
    from ismip6_assets.cli.runs import plan_archive

    key = "AWI/PISM1/exp05"
    folder = archive_dir / "Projection-AIS/AWI/PISM1/exp05"
    source, store = parse_location(str(archive_dir), "source"), parse_location(str(store_dir), "store")

    def copy_beside(variable: str):
        """`{file} (copy).nc` with other values: it sorts before the real file (' ' < '.')."""
        with xr.open_dataset(folder / f"{variable}_AIS_AWI_PISM1_exp05.nc") as ds:
            changed = ds.load()
        changed[variable] = changed[variable] * 2
        path = folder / f"{variable}_AIS_AWI_PISM1_exp05 (copy).nc"
        changed.to_netcdf(path)
        return path

    # Both present from the start: neither is stored, the check is ERROR and names both.
    orog_copy = copy_beside("orog")
    instance.add_dynamic_partitions("model_experiment", [key])
    first = run_partition(archive, instance, key)
    assert first.status == "ERROR" and first.written == 3
    assert "orog" not in zarr.open_group(open_plain_repo(store_dir, archive_dir).readonly_session("main").store, path="AWI_PISM1/exp05", mode="r")
    listing = list_archive(source, PartitionKey.parse(key))
    reasons = {path.rsplit("/", 1)[-1]: reason for path, reason in listing.ignored}
    assert set(reasons) == {orog_copy.name, "orog_AIS_AWI_PISM1_exp05.nc"}
    assert all(r.startswith("duplicate:") and orog_copy.name in r and "AWI_PISM1/exp05/orog" in r for r in reasons.values())
    import pandas as pd

    indexed = pd.read_parquet(store_dir / "index/AWI/PISM1/exp05.parquet")  # the index names both, flagged
    assert set(indexed.loc[indexed["duplicate"], "url"].str.rsplit("/", n=1).str[-1]) == set(reasons)

    orog_copy.unlink()
    assert run_partition(archive, instance, key).status == "OK"

    # A copy appears beside a stored file: the stored group stays as it is, and the check says ERROR.
    repo = open_plain_repo(store_dir, archive_dir)
    before = open_group(repo, "AWI_PISM1/exp05/lithk")
    head = next(iter(repo.ancestry(branch="main"))).id
    lithk_copy = copy_beside("lithk")
    outcome = run_partition(archive, instance, key)
    assert outcome.status == "ERROR" and outcome.written == 0 and outcome.removed == 0 and outcome.commit_id == ""
    assert next(iter(open_plain_repo(store_dir, archive_dir).ancestry(branch="main"))).id == head
    after = open_group(open_plain_repo(store_dir, archive_dir), "AWI_PISM1/exp05/lithk")
    np.testing.assert_array_equal(after["lithk"].values, before["lithk"].values)
    assert after.attrs["ismip6_source_url"] == before.attrs["ismip6_source_url"] == f"file://{folder}/lithk_AIS_AWI_PISM1_exp05.nc"
    # `ismip6 run` and `ismip6 reconcile` plan from the same diff: ERROR, naming both files, no run asked.
    diff = plan_archive(archive)[key]
    assert diff.status == "ERROR" and not diff.behind
    assert sorted(u.rsplit("/", 1)[-1] for u in diff.duplicate) == sorted([lithk_copy.name, "lithk_AIS_AWI_PISM1_exp05.nc"])

    lithk_copy.unlink()
    assert run_partition(archive, instance, key).status == "OK"
