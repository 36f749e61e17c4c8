"""store_maintenance through Dagster: old snapshots go, every group stays readable, tags stay."""

from __future__ import annotations

import os

import dagster as dg
import numpy as np
import pytest
import xarray as xr
import zarr

from ismip6_assets.cli import main as ismip6
from ismip6_assets.definitions import defs
from ismip6_assets.defs.jobs import store_maintenance_job
from ismip6_assets.core.maintenance import reachable_snapshots
from ismip6_assets.cli.runs import run_partition
from ismip6_assets.core.sample_archive import sample_dataset, write_netcdf
from ismip6_assets.core.store_state import _read_all
from tests.conftest import N_TIMES, open_group, open_plain_repo

KEYS = ("AWI/PISM1/exp05", "DOE/MALI/expA1", "UCIJPL/ISSM/exp13")


def groups_of(repo, **ref) -> set[str]:
    root = zarr.open_group(repo.readonly_session(**ref).store, mode="r")
    return {f"{m}/{e}/{v}" for m, mg in root.groups() for e, eg in mg.groups() for v, _ in eg.groups()}


@pytest.fixture
def tag_command():
    """`ismip6 tag` in this process."""
    return lambda *args: ismip6(["tag", *args])


def test_maintenance_removes_old_snapshots_keeps_every_group_readable_and_every_tag(archive, archive_dir, store_dir, instance, capsys, tag_command):
    instance.add_dynamic_partitions("model_experiment", list(KEYS))
    for key in KEYS[:2]:
        assert run_partition(archive, instance, key).status == "OK"
    assert tag_command("v1.0", "--source", str(archive_dir), "--store", str(store_dir)) == 0
    assert "v1.0" in capsys.readouterr().out
    assert tag_command("v1.0", "--source", str(archive_dir), "--store", str(store_dir)) == 2  # tags are immutable
    assert "already exists" in capsys.readouterr().err
    tagged = groups_of(open_plain_repo(store_dir, archive_dir), tag="v1.0")
    # More history: a third partition, then a rewritten file (its old manifest loses its last reader).
    assert run_partition(archive, instance, KEYS[2]).status == "OK"
    path = archive_dir / "Projection-AIS/UCIJPL/ISSM/exp13/exp13lithk_AIS_UCIJPL_ISSM_exp13.nc"
    write_netcdf(sample_dataset("lithk", "rewritten", N_TIMES), path, "contiguous")
    assert run_partition(archive, instance, KEYS[2]).written == 1

    repo = open_plain_repo(store_dir, archive_dir)
    before = len(reachable_snapshots(repo))
    files_before = sum(len(f) for _, _, f in os.walk(store_dir))
    state_before = {p: (k, s.groups) for p, (k, s) in _read_all(repo, repo.lookup_branch("main")).items()}

    result = store_maintenance_job.execute_in_process(
        instance=instance,
        resources={"archive": archive},
        run_config={"ops": {"expire_and_collect": {"config": {"retention_days": 0}}}},
    )

    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    repo = open_plain_repo(store_dir, archive_dir)
    after = len(reachable_snapshots(repo))
    assert metadata["snapshots_before"] == before and metadata["snapshots_after"] == after < before
    assert metadata["snapshots_expired"] > 0 and metadata["snapshots_deleted"] > 0 and metadata["bytes_deleted"] > 0
    assert metadata["manifests_deleted"] >= 1  # the rewritten file's old manifest (not in the tag)
    assert sum(len(f) for _, _, f in os.walk(store_dir)) < files_before
    # The tag is intact and still reads what it tagged; every group on main reads its source's values.
    assert metadata["tags_kept"] == 1 and groups_of(repo, tag="v1.0") == tagged
    for group in groups_of(repo, branch="main"):
        stored = open_group(repo, group)
        variable = group.rsplit("/", 1)[-1]
        if group.startswith("combined/"):  # a partition's view (views.py): every field reads
            assert all(stored[v].load().size for v in stored.data_vars)
            continue
        url = stored.attrs["ismip6_source_url"]
        with xr.open_dataset(url.removeprefix("file://")) as source:
            np.testing.assert_array_equal(stored[variable].values, source[variable].values)
    # The whole store's state still reads the same (it is built from Icechunk's diff since the first snapshot).
    assert {p: (k, s.groups) for p, (k, s) in _read_all(repo, repo.lookup_branch("main")).items()} == state_before
    assert run_partition(archive, instance, KEYS[2]).status == "OK"  # and the pipeline goes on


def test_maintenance_is_off_until_its_schedule_is_turned_on():
    schedule = defs.resolve_schedule_def("store_maintenance_schedule")
    assert schedule.job_name == "store_maintenance" and schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.resolve_job_def("store_maintenance").graph.node_named("expire_and_collect").definition.pool == "icechunk_writer"
