"""Writers that meet on one store: a partition another writer committed meanwhile is not committed
twice, sibling partitions both land, and several writers creating a new store all open it.

The races are made deterministic where they can be: writer B's `replan` (called in the session B's
commit is built in) first lets writer A commit through the same library functions, so A's commit
lands after B's session began and B's commit conflicts, exactly as between two machines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest

from ismip6_assets.core.gcs import gcs_filesystem
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.reconcile import commit_plan, replan, store_diff
from ismip6_assets.core.store import check_store, commit_partition, open_repository, writer_lock
from ismip6_assets.core.store_state import read_partition_state
from ismip6_assets.core.virtualize import virtualize_rows
from tests.support.gcs_fixtures import STORE_BUCKET, emulator_access, gcs, gcs_archive, gcs_emulator  # noqa: F401 - fixtures

KEY = PartitionKey.parse("AWI/PISM1/exp05")
SIBLING = PartitionKey.parse("AWI/PISM1/ctrl_proj_std")  # same model: both create the group AWI_PISM1


class Writer:
    """One machine's view of a partition: its listing, its virtualization, its first plan."""

    def __init__(self, repo, source, key: PartitionKey):
        self.repo, self.key = repo, key
        self.rows = list_archive(source, key).rows
        result = virtualize_rows(self.rows.to_dict("records"), source)
        self.files, self.failures = result.files, result.failures
        self.plan = commit_plan(store_diff(key, self.rows, read_partition_state(repo, key)), self.files, self.failures)

    def commit(self, replan_hook=None):
        again = replan(self.key, self.rows, self.files, self.failures)
        if replan_hook is not None:
            again = replan_hook(again)
        p = self.plan
        return commit_partition(self.repo, self.key, p.write, p.remove, p.failures, p.remove_partition, p.rebuild_view,
                                replan=again)


def commits_per_partition(repo) -> dict[str, int]:
    counts: dict[str, int] = {}
    for snapshot in repo.ancestry(branch="main"):
        partition = (snapshot.metadata or {}).get("partition")
        if partition:
            counts[partition] = counts.get(partition, 0) + 1
    return counts


def other_writer_commits_first(other: Writer):
    """A `replan` wrapper: the first time B plans (its session is open), A's commit lands."""

    def wrap(again):
        landed = []

        def hook(session):
            if not landed:
                landed.append(other.commit())
            return again(session)

        hook.landed = landed
        return hook

    return wrap


@pytest.fixture
def stores(archive_dir, store_dir):
    source, store = parse_location(str(archive_dir), "source"), parse_location(str(store_dir), "store")
    return source, open_repository(store, source)


def test_the_same_partition_committed_by_another_writer_mid_commit_is_not_committed_again(stores):
    source, repo = stores
    a, b = Writer(repo, source, KEY), Writer(repo, source, KEY)  # both planned on the empty store
    snapshot, message = b.commit(other_writer_commits_first(a))
    # B's commit conflicted with A's on the partition's groups; planned again at A's head, nothing was left.
    assert (snapshot, message) == (None, "")
    assert commits_per_partition(repo) == {str(KEY): 1}
    state = read_partition_state(repo, KEY)
    assert sorted(state.groups) == sorted(f.variable for f in a.files)
    assert state.view_sources == {v: g.fingerprint for v, g in state.groups.items()}  # A's view stands, whole


def test_a_plan_made_before_another_writers_commit_commits_nothing(stores):
    """B planned, then waited (for the local writer lock, say) while A committed the partition."""
    source, repo = stores
    a, b = Writer(repo, source, KEY), Writer(repo, source, KEY)
    assert a.commit()[0]
    assert b.plan.write  # B's plan, made before, still says to write everything
    assert b.commit() == (None, "")
    assert commits_per_partition(repo) == {str(KEY): 1}


def test_sibling_partitions_conflicting_on_their_model_group_both_land_once(stores):
    source, repo = stores
    a, b = Writer(repo, source, SIBLING), Writer(repo, source, KEY)
    hook = other_writer_commits_first(a)
    snapshot, message = b.commit(hook)
    assert snapshot and message.startswith(f"Added {len(b.files)} datasets")
    assert commits_per_partition(repo) == {str(KEY): 1, str(SIBLING): 1}
    for writer in (a, b):
        assert sorted(read_partition_state(repo, writer.key).groups) == sorted(f.variable for f in writer.files)


def test_a_half_created_repository_is_not_called_foreign(tmp_path, archive_dir):
    """What a machine sees while another creates the store: Icechunk's first snapshot, no ``repo``
    object yet. It is not a foreign folder; creating there succeeds."""
    store = parse_location(str(tmp_path / "store"), "store")
    source = parse_location(str(archive_dir), "source")
    open_repository(store, source)
    (tmp_path / "store" / "repo").unlink()
    check_store(store)
    assert open_repository(store, source).lookup_branch("main")
    (tmp_path / "store" / "zarr.json").write_text("{}")  # something else beside it still is foreign
    (tmp_path / "store" / "repo").unlink()
    with pytest.raises(ValueError, match="not an Icechunk repository .found 'zarr.json'"):
        check_store(store)


def test_object_store_writers_take_no_machine_lock(tmp_path):
    """gs:// writers meet through Icechunk: two writers on one machine hold `writer_lock` at once,
    and nothing is written to the machine's temp folder. A local store's lock file is in the store."""
    gs = parse_location("gs://ismip6-icechunk/store", "store")
    assert gs.writer_lock_path is None
    with writer_lock(gs, wait_seconds=0), writer_lock(gs, wait_seconds=0):
        pass
    local = parse_location(str(tmp_path / "store"), "store")
    assert local.writer_lock_path == str(tmp_path / "store" / ".ismip6-writer.lock")


@pytest.mark.gcs
def test_several_writers_creating_a_new_store_at_once_all_open_it(gcs):
    """Four threads create-or-open one new store at the same moment, three times: every one gets
    the same repository (before: `repo info object was updated after this session started`, or
    "… is a non-empty folder that is not an Icechunk repository (found 'repo')")."""
    source = parse_location("gs://ismip6", "source", emulator_access())
    for _ in range(3):
        store = parse_location(f"gs://{STORE_BUCKET}/{uuid.uuid4().hex[:8]}", "store", emulator_access())
        barrier, results = threading.Barrier(4), {}

        def one(i: int) -> None:
            barrier.wait()
            try:
                results[i] = open_repository(store, source).lookup_branch("main")  # a repository with its branch
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(results) == 4 and not any(isinstance(r, Exception) for r in results.values()), results


# A round trip as to GCS: the machines' steps then take as long as their requests, not their CPU
# (2 cores, 3 machines), so they stay in step and their creates and commits overlap.
LATENCY_MS = 50
RACED = ("AWI/PISM1/ctrl_proj_std", "AWI/PISM1/exp05", "DOE/MALI/expA1")  # siblings of one new model, one with a failure


def first_looks(emulator, name: str) -> list:
    """Object reads in the test's folder `name`: each `ismip6 run` starts with one (checking --source)."""
    return [r for r in emulator.requests() if f"/{name}/" in unquote(r[1]) and "?" not in r[1]]


@pytest.mark.gcs
@pytest.mark.slow
def test_three_machines_running_on_one_new_store_all_succeed_and_commit_each_partition_once(gcs, gcs_archive, tmp_path):
    """Three `ismip6 run` processes, each a machine (its own temp folder, its own ephemeral Dagster
    instance), started together on an empty gs:// store: all exit 0, the store reconciles, and each
    partition was committed once (its commits counted by walking main's ancestry)."""
    name = uuid.uuid4().hex[:8]
    prefix = f"{STORE_BUCKET}/{name}"
    for key in RACED:  # a three-partition archive: small enough to race in seconds
        folder = f"Projection-AIS/{key}"
        gcs_filesystem(emulator_access()).put(str(gcs_archive / folder), f"{prefix}/source/{folder}", recursive=True)
    source, store = f"gs://{prefix}/source", f"gs://{prefix}/store"
    ismip6 = str(Path(sys.executable).with_name("ismip6"))

    def machine(label: str) -> subprocess.Popen:
        temp = tmp_path / label
        temp.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ISMIP6_SOURCE_URL", "ISMIP6_STORE_URL")}
        env.update(STORAGE_EMULATOR_HOST=gcs.url, TMPDIR=str(temp))
        return subprocess.Popen([ismip6, "run", "--source", source, "--store", store], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    # Each machine's first request (its look at the source folder) is held until all three have
    # made theirs; then they go on at one moment, as machines a scheduler starts together.
    gcs.requests(clear=True)
    gcs.hold()
    gcs.set_delay(LATENCY_MS)
    machines: list[subprocess.Popen] = []
    try:
        machines += [machine(f"machine-{i}") for i in range(3)]
        deadline = time.monotonic() + 120
        while len(first_looks(gcs, name)) < len(machines) and time.monotonic() < deadline:
            assert all(m.poll() is None for m in machines), "a machine exited before its first request"
            time.sleep(0.1)
        started_together = len(first_looks(gcs, name)) >= len(machines)
        gcs.release()
        outputs = [m.communicate(timeout=400)[0] for m in machines]
    finally:
        gcs.release()
        gcs.set_delay(0)
        for m in machines:  # a machine still running (a timeout) ends here, and its daemon with it
            if m.poll() is None:
                m.kill()
                m.wait()
    assert started_together, "the machines were not all held at their first request"
    for m, out in zip(machines, outputs, strict=True):
        assert m.returncode == 0, out[-3000:]

    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    check = subprocess.run([ismip6, "reconcile", "--source", source, "--store", store],
                           env=env, capture_output=True, text=True, timeout=400)
    assert check.returncode == 0 and "0 ERROR" in check.stdout, check.stdout[-3000:] + check.stderr[-3000:]
    repo = open_repository(parse_location(store, "store", emulator_access()), parse_location(source, "source", emulator_access()))
    assert commits_per_partition(repo) == {key: 1 for key in RACED}, outputs
    # and each group was written by one machine: the others found it done (no commit, nothing written)
    stored = sum(len(read_partition_state(repo, PartitionKey.parse(key)).groups) for key in RACED)
    written = [int(re.search(r"(\d+) groups written", out).group(1)) for out in outputs]
    assert sum(written) == stored, outputs
