"""After a full run, six faults: each found by the check, requested by the sensor, repaired by one run.

The sensor is evaluated the way the daemon runs it: on a real `DagsterInstance`, with the cursor of
the previous tick, and its partition requests applied to the instance before the runs.
"""

from __future__ import annotations

import json

import os
import shutil

import dagster as dg
import numpy as np
import pytest
import xarray as xr
import zarr

from ismip6_assets.defs.checks import reconciliation
from ismip6_assets.cli import main as ismip6
from ismip6_assets.definitions import ASSETS, build_resources
from ismip6_assets.core.sample_archive import sample_dataset, write_netcdf
from ismip6_assets.defs.sensors import archive_sensor
from ismip6_assets.defs.sensors import requested_partitions
from ismip6_assets.cli.runs import run_archive, run_partition
from tests.conftest import N_TIMES, open_group, open_plain_repo

ADDED, NEW, REWRITTEN, DELETED, HAND_DELETED, CORRUPTED = (
    "AWI/PISM1/exp05", "NEWI/MODEL1/exp05", "ILTS_PIK/SICOPOLIS1/hist_std", "DOE/MALI/expA1", "UCIJPL/ISSM/exp13", "AWI/PISM1/ctrl_proj_std",
)
UNTOUCHED = "ULB/fETISh_16km/expA6"


def tick(archive, instance, cursor):
    """One sensor evaluation; applies its partition requests to the instance as the daemon does."""
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"archive": archive}) as context:
        result = archive_sensor(context)
    added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
    if added:
        instance.add_dynamic_partitions("model_experiment", added)
    return result, added


def check(archive, instance, key) -> dg.AssetCheckEvaluation:
    """The reconciliation check alone, through Dagster (file_index carries the partition)."""
    result = dg.materialize(
        [*ASSETS, reconciliation], partition_key=key, instance=instance, resources=build_resources(archive),
        selection=dg.AssetSelection.assets("file_index") | dg.AssetSelection.checks(reconciliation), raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def distinct_mtime(path, before: float) -> None:
    """Local mtimes can tie within one test, so set one the old fingerprint never had. In the past:
    Icechunk refuses refs to an object modified after the ref was written, as a future mtime is."""
    earlier = before - 10 - abs(os.stat(path).st_mtime - before)
    os.utime(path, (earlier, earlier))


def new_file(archive_dir, key: str, variable: str, seed: str, layout: str = "chunked"):
    inst, model, exp = key.split("/")
    path = archive_dir / "Projection-AIS" / key / f"{variable}_AIS_{inst}_{model}_{exp}.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    write_netcdf(sample_dataset(variable, seed, N_TIMES), path, layout)
    return path


@pytest.mark.slow
def test_six_faults_are_found_requested_and_repaired(archive, archive_dir, store_dir, instance, capsys):
    assert {o.status for o in run_archive(archive, instance, in_process=True)} == {"OK"}
    result, added = tick(archive, instance, None)
    assert result.run_requests == [] and added == []  # the store is current: a first tick asks nothing
    cursor = result.cursor
    head = next(iter(open_plain_repo(store_dir, archive_dir).ancestry(branch="main"))).id
    top = archive_dir / "Projection-AIS"

    new_file(archive_dir, ADDED, "sftgif", "added")  # (1) a file added to a partition
    new_file(archive_dir, NEW, "lithk", "new model")  # (2) a new model/experiment folder
    rewritten = top / REWRITTEN / "lithk_AIS_ILTS_PIK_SICOPOLIS_hist_std.nc"  # (3) new values
    old_values, old_mtime = xr.open_dataset(rewritten).lithk.values, rewritten.stat().st_mtime
    rewritten.unlink()
    write_netcdf(sample_dataset("lithk", "rewritten", N_TIMES), rewritten, "netcdf3")
    distinct_mtime(rewritten, old_mtime)
    (top / DELETED / "orog_AIS_DOE_MALI_expA1.nc").unlink()  # (4) a file deleted
    repo = open_plain_repo(store_dir, archive_dir)  # (5) a group deleted from the store by hand
    session = repo.writable_session("main")
    del zarr.open_group(session.store, mode="a")["UCIJPL_ISSM/exp13/lithk"]
    session.commit("delete a group by hand")
    corrupted = top / CORRUPTED / "orog_AIS_AWI_PISM1_ctrl_proj_std.nc"  # (6) corrupted, fixed later
    good_bytes, good_mtime = corrupted.read_bytes(), corrupted.stat().st_mtime
    corrupted.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    distinct_mtime(corrupted, good_mtime)

    # The sensor: exactly the affected partitions, the new one added, one run key each.
    result, added = tick(archive, instance, cursor)
    affected = {ADDED, NEW, REWRITTEN, DELETED, HAND_DELETED, CORRUPTED}
    assert added == [NEW]
    assert set(requested_partitions(result)) == affected
    assert len(result.run_requests) == 1  # one backfill of them all
    assert len({json.loads(result.cursor)["runs"][k] for k in affected}) == len(affected)
    assert tick(archive, instance, result.cursor)[0].run_requests == []  # asked once per state
    cursor = result.cursor

    # The check: ERROR, with the right category for each.
    expected = {ADDED: "missing", NEW: "missing", REWRITTEN: "stale", DELETED: "extra", HAND_DELETED: "missing", CORRUPTED: "stale"}
    for key, category in expected.items():
        evaluation = check(archive, instance, key)
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR and not evaluation.passed, key
        assert evaluation.metadata[category].value == 1, (key, category, evaluation.metadata["findings"].value)
    assert check(archive, instance, UNTOUCHED).passed

    # `ismip6 reconcile` exits non-zero and names each affected group while the store is behind.
    capsys.readouterr()
    assert ismip6(["reconcile", "--source", str(archive_dir), "--store", str(store_dir)]) == 1
    out = capsys.readouterr().out
    for group in ("AWI_PISM1/exp05/sftgif", "NEWI_MODEL1/exp05/lithk", "ILTS_PIK_SICOPOLIS1/hist_std/lithk", "DOE_MALI/expA1/orog",
                  "UCIJPL_ISSM/exp13/lithk", "AWI_PISM1/ctrl_proj_std/orog"):
        assert f"[group {group}]" in out, group

    # The repair: one run per request. The corrupt file leaves a failure record (WARN), not a stale group.
    outcomes = {k: run_partition(archive, instance, k) for k in requested_partitions(result)}
    assert {k: o.status for k, o in outcomes.items()} == {k: "WARN" if k == CORRUPTED else "OK" for k in affected}
    assert tick(archive, instance, cursor)[0].run_requests == []  # converged: nothing left to ask
    repo = open_plain_repo(store_dir, archive_dir)
    new_values = open_group(repo, "ILTS_PIK_SICOPOLIS1/hist_std/lithk").lithk.values
    np.testing.assert_array_equal(new_values, xr.open_dataset(rewritten).lithk.values)
    assert not np.array_equal(new_values, old_values, equal_nan=True)
    assert "orog" not in zarr.open_group(repo.readonly_session("main").store, path="AWI_PISM1/ctrl_proj_std", mode="r")

    # (6) continued: the file is fixed; only its partition is asked for, and the run converges.
    corrupt_mtime = corrupted.stat().st_mtime
    corrupted.write_bytes(good_bytes)
    distinct_mtime(corrupted, corrupt_mtime)
    result, _ = tick(archive, instance, cursor)
    assert requested_partitions(result) == [CORRUPTED]
    assert run_partition(archive, instance, CORRUPTED).status == "OK"
    again = run_partition(archive, instance, CORRUPTED)
    assert again.written == 0 and again.commit_id == ""  # the second run after a fault has nothing to do
    assert ismip6(["reconcile", "--source", str(archive_dir), "--store", str(store_dir)]) == 0  # caught up

    # Untouched partitions got no commit: every commit since the full run names an affected one.
    touched = []
    for snapshot in open_plain_repo(store_dir, archive_dir).ancestry(branch="main"):
        if snapshot.id == head:
            break
        touched.append((snapshot.metadata or {}).get("partition", snapshot.message))
    assert set(touched) == affected | {"delete a group by hand"}
    assert UNTOUCHED not in touched


@pytest.mark.slow
def test_a_deleted_folder_is_removed_in_a_commit_that_says_so_and_stays_red(archive, archive_dir, store_dir, instance):
    instance.add_dynamic_partitions("model_experiment", [DELETED])
    assert run_partition(archive, instance, DELETED).status == "OK"
    cursor = tick(archive, instance, None)[0].cursor

    shutil.rmtree(archive_dir / "Projection-AIS" / DELETED)
    result, _ = tick(archive, instance, cursor)
    assert DELETED in requested_partitions(result)
    assert ":gone:" in json.loads(result.cursor)["runs"][DELETED]
    assert check(archive, instance, DELETED).metadata["findings"].value.count("partition_gone") == 1

    outcome = run_partition(archive, instance, DELETED)
    repo = open_plain_repo(store_dir, archive_dir)
    assert next(iter(repo.ancestry(branch="main"))).message == f"Removed partition {DELETED}: its archive folder is gone"
    assert "DOE_MALI" not in zarr.open_group(repo.readonly_session("main").store, mode="r")
    # Not silently green: nothing is left to compare, and the check says so.
    assert outcome.status == "ERROR"
    evaluation = check(archive, instance, DELETED)
    assert not evaluation.passed and evaluation.metadata["indexed"].value == 0
    assert "no_files" in evaluation.metadata["findings"].value
    assert DELETED not in requested_partitions(tick(archive, instance, result.cursor)[0])
