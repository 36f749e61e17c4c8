"""The whole store's state read through its snapshot-keyed file equals a full read, whatever happened.

Each test changes the store the way it changes in use (a run, a hand-deleted group, a branch reset,
a damaged file) and compares `load_store_state` through the file with a read of every group.
"""

from __future__ import annotations

import json

import pytest
import zarr

from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.cli.runs import run_archive, run_partition
from ismip6_assets.core.store import open_repository
from ismip6_assets.core.store_state import load_store_state, read_partition_state, state_cache_path

KEY = PartitionKey.parse("AWI/PISM1/exp05")


def _plain(states) -> dict:
    return {k: (sorted((v, g.url, g.fingerprint) for v, g in s.groups.items()), s.failures, s.view_sources) for k, s in states.items()}


def _assert_equals_full_read(repo, store) -> str:
    """The read through the file equals a full read, which equals each partition read on its own
    through zarr (the code path of the check and the commit)."""
    through_file = load_store_state(repo, store)
    full = load_store_state(repo)
    assert full.how == "full"
    assert _plain(through_file.states) == _plain(full.states)
    one_by_one = {key: read_partition_state(repo, PartitionKey.parse(key)) for key in full.states}
    assert _plain(one_by_one) == _plain(full.states) and all(s.exists for s in one_by_one.values())
    return through_file.how


@pytest.fixture
def ran(archive, instance):
    outcomes = run_archive(archive, instance, in_process=True)
    assert {o.status for o in outcomes} == {"OK"}
    return open_repository(archive.store, archive.source)


@pytest.mark.slow
def test_a_run_leaves_the_file_at_the_head_and_it_serves_the_next_read(archive, ran):
    saved = json.loads(state_cache_path(archive.store).fs.open(state_cache_path(archive.store).fs_path).read())
    assert saved["snapshot"] == ran.lookup_branch("main")
    assert sum(len(p["groups"]) for p in saved["partitions"].values()) == 29  # every stored group
    # and each partition's view, built from exactly its groups
    assert all(p["view"] == {v: fp for v, (_url, fp) in p["groups"].items()} for p in saved["partitions"].values())
    assert _assert_equals_full_read(ran, archive.store) == "cached"


@pytest.mark.slow
def test_groups_deleted_by_hand_are_seen_reading_only_their_partition(archive, ran):
    session = ran.writable_session("main")
    del zarr.open_group(session.store, mode="a")[KEY.variable_group("lithk")]
    session.commit("delete a group by hand")

    read = load_store_state(ran, archive.store)
    assert (read.how, read.partitions_read) == ("incremental", 1)
    assert "lithk" not in read.states[str(KEY)].groups and "orog" in read.states[str(KEY)].groups
    assert _assert_equals_full_read(ran, archive.store) == "cached"


@pytest.mark.slow
def test_a_removed_partition_and_a_new_failure_are_seen(archive, archive_dir, ran, instance):
    (archive_dir / "Projection-AIS" / "AWI" / "PISM1" / "exp05" / "lithk_AIS_AWI_PISM1_exp05.nc").write_bytes(b"not netcdf")
    assert run_partition(archive, instance, str(KEY)).status == "WARN"
    for path in (archive_dir / "Projection-AIS" / "AWI" / "PISM1" / "ctrl_proj_std").iterdir():
        path.unlink()
    assert run_partition(archive, instance, "AWI/PISM1/ctrl_proj_std").status == "ERROR"  # nothing left to compare

    read = load_store_state(ran, archive.store)
    assert read.how == "incremental"
    assert "AWI/PISM1/ctrl_proj_std" not in read.states
    assert [f["variable"] for f in read.states[str(KEY)].failures] == ["lithk"]
    assert _assert_equals_full_read(ran, archive.store) == "cached"


@pytest.mark.slow
def test_a_branch_reset_to_an_older_snapshot_means_a_full_read(archive, ran):
    first = [s.id for s in ran.ancestry(branch="main")][-2]  # the first partition's commit
    ran.reset_branch("main", first)
    assert load_store_state(ran, archive.store).how == "full"
    assert len(load_store_state(ran, archive.store).states) == 1
    assert _assert_equals_full_read(ran, archive.store) == "cached"


@pytest.mark.slow
@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"version": 1, "snapshot": "X", "partitions": {"a": 1}}', b'{"version": 99}'])
def test_a_damaged_file_is_ignored_and_rewritten(archive, ran, damage):
    target = state_cache_path(archive.store)
    with target.fs.open(target.fs_path, "wb") as f:
        f.write(damage)
    assert load_store_state(ran, archive.store).how == "full"
    assert _assert_equals_full_read(ran, archive.store) == "cached"


@pytest.mark.slow
def test_a_stale_file_for_a_snapshot_the_store_moved_past_is_brought_forward(archive, ran):
    """The file is a cache, never the answer: a file for an older snapshot of this branch is
    reconciled with everything committed since."""
    target = state_cache_path(archive.store)
    old = ran.lookup_branch("main")
    stale = target.fs.open(target.fs_path).read()
    session = ran.writable_session("main")
    exp = zarr.open_group(session.store, mode="a")[KEY.group]
    exp.attrs["ismip6_failures"] = json.dumps([{"url": "file:///x.nc", "fingerprint": "f", "variable": "x"}])
    session.commit("record a failure by hand")
    with target.fs.open(target.fs_path, "wb") as f:
        f.write(stale)
    assert json.loads(stale)["snapshot"] == old

    read = load_store_state(ran, archive.store)
    assert (read.how, read.partitions_read) == ("incremental", 1)
    assert read.states[str(KEY)].failures[0]["url"] == "file:///x.nc"
