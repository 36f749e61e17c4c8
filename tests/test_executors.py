"""Per-file virtualization through any configured executor gives the same virtual datasets."""

from __future__ import annotations

import threading

import pytest

from ismip6_assets.core import executors, virtualize
from ismip6_assets.core.executors import ExecutorSpec, executor_for, make_executor, parse_spec
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.source_reads import HEAD_BYTES, OneFileStore
from ismip6_assets.core.locations import ConfigError, parse_location
from ismip6_assets.cli.runs import run_partition
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.core.virtualize import virtualize_rows
from tests.conftest import open_group, open_plain_repo


@pytest.mark.parametrize(
    "text, spec",
    [
        (None, ExecutorSpec("processes")),
        ("serial", ExecutorSpec("serial")),
        ("threads:8", ExecutorSpec("threads", 8)),
        ("processes:2", ExecutorSpec("processes", 2)),
        ("dask://sched:8786", ExecutorSpec("dask", address="tcp://sched:8786")),
        ("tcp://10.0.0.1:8786", ExecutorSpec("dask", address="tcp://10.0.0.1:8786")),
    ],
)
def test_spec_parsing(text, spec):
    assert parse_spec(text) == spec


@pytest.mark.parametrize("text", ["fibers", "threads:0", "processes:x", "dask://"])
def test_bad_spec_names_the_setting(text):
    with pytest.raises(ConfigError, match="ISMIP6_EXECUTOR"):
        parse_spec(text)


def test_small_batches_stay_inline_until_a_pool_runs(monkeypatch):
    monkeypatch.setattr(executors, "_shared", {})
    assert executor_for(23, ExecutorSpec("processes")) is None
    assert executor_for(23, ExecutorSpec("serial")) is None
    assert executor_for(executors.POOL_MIN_FILES, ExecutorSpec("threads", 2)) is not None


def _summary(result) -> list[tuple]:
    return sorted(
        (f.url, f.group, f.fingerprint, f.chunk_refs, sorted(f.dataset.variables), f.dataset.attrs["ismip6_source_url"]) for f in result.files
    ) + sorted((f.url, f.error) for f in result.failures)


@pytest.fixture
def rows_and_source(archive_dir):
    source = parse_location(str(archive_dir), "source")
    return list_archive(source).rows.to_dict("records"), source


@pytest.mark.parametrize("spec", [ExecutorSpec("threads", 2), ExecutorSpec("processes", 2)], ids=str)
def test_local_executors_match_serial(spec, rows_and_source):
    rows, source = rows_and_source
    expected = _summary(virtualize_rows(rows, source))
    executor = make_executor(spec)
    try:
        assert _summary(virtualize_rows(rows, source, executor=executor)) == expected
    finally:
        executor.shutdown()


def test_partitions_are_handed_to_the_executor_before_the_last_is_collected(rows_and_source):
    """`virtualize_partitions`: each partition's files go to the executor before the partition
    before it is collected (the workers never wait between partitions), and every partition's
    result is the one `virtualize_rows` gives it alone."""
    from concurrent.futures import ThreadPoolExecutor

    from ismip6_assets.core.virtualize import virtualize_partitions

    rows, source = rows_and_source
    batches: dict[str, list[dict]] = {}
    for row in rows:
        batches.setdefault(row["partition_key"], []).append(row)
    assert len(batches) >= 3
    events: list[tuple[str, str]] = []

    class Recording(ThreadPoolExecutor):
        def map(self, fn, *iterables, **kwargs):
            events.append(("handed", iterables[0][0]["partition_key"]))
            return super().map(fn, *iterables, **kwargs)

    with Recording(2) as executor:
        results = []
        for key, result in virtualize_partitions(batches.items(), source, executor):
            events.append(("collected", key))
            results.append((key, _summary(result)))
    keys = list(batches)
    expected = [("handed", keys[0])] + [e for k, after in zip(keys, keys[1:]) for e in (("handed", after), ("collected", k))]
    assert events == expected + [("collected", keys[-1])]
    assert results == [(k, _summary(virtualize_rows(batches[k], source))) for k in keys]


CALLS: list[str] = []
_ORIGINAL = virtualize.virtualize_file


def _recording_virtualize_file(row, source, reads=None):
    CALLS.append(threading.current_thread().name)
    return _ORIGINAL(row, source, reads)


def test_dask_cluster_virtualizes_and_a_partition_commits_through_it(rows_and_source, archive, archive_dir, store_dir, instance, monkeypatch):
    distributed = pytest.importorskip("distributed")
    rows, source = rows_and_source
    expected = _summary(virtualize_rows(rows, source))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        spec = parse_spec(cluster.scheduler_address)
        assert spec.kind == "dask"
        try:
            # The library through the executor the configuration names.
            assert _summary(virtualize_rows(rows, source, executor=executor_for(len(rows), spec))) == expected
            # And one partition through Dagster, its files virtualized on the cluster's worker threads
            # (processes=False: the workers share this process, so the recorder sees their calls).
            monkeypatch.setattr(virtualize, "virtualize_file", _recording_virtualize_file)
            CALLS.clear()
            key = "AWI/PISM1/exp05"
            instance.add_dynamic_partitions("model_experiment", [key])
            # The setting travels with the run: the resource's `executor` field (ISMIP6_EXECUTOR).
            on_cluster = ArchiveResource(source_url=archive.source_url, store_url=archive.store_url, executor=cluster.scheduler_address)
            outcome = run_partition(on_cluster, instance, key)
            assert outcome.status == "OK" and outcome.written == 4, outcome
            assert len(CALLS) == 4 and threading.main_thread().name not in CALLS, CALLS
        finally:
            executors.shutdown_shared()
    ds = open_group(open_plain_repo(store_dir, archive_dir), "AWI_PISM1/exp05/lithk")
    assert ds["lithk"].shape[0] == 3


FORKED_POOL_SCRIPT = """
import json, os, sys
from ismip6_assets.core import executors


def parent_pid(_):
    return os.getppid()


# First thing, while this process has one thread, as run_worker.execute_run does (pandas' import
# starts native threads: a fork after it is refused).
forked = executors.fork_default_pool()
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.virtualize import virtualize_rows

pool = executors.shared_executor(executors.parse_spec(None))
source = parse_location(sys.argv[1], "source")
rows = list_archive(source).rows.to_dict("records")
through_pool = virtualize_rows(rows, source, executor=pool)
inline = virtualize_rows(rows, source)
print(json.dumps({
    "forked": forked,
    "start_method": pool._mp_context.get_start_method(),
    "parents": sorted({os.getpid() == p for p in pool.map(parent_pid, range(8))}),
    "same": sorted((f.url, f.chunk_refs, sorted(f.dataset.variables)) for f in through_pool.files)
            == sorted((f.url, f.chunk_refs, sorted(f.dataset.variables)) for f in inline.files),
    "files": len(through_pool.files),
}))
executors.shutdown_shared()
"""


def test_a_pool_forked_first_thing_is_the_default_one_and_virtualizes_alike(archive_dir):
    """A warm run worker forks its virtualization pool before it starts a thread: the workers are
    its children, made by fork (no second import of VirtualiZarr), and virtualize as inline."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FORKED_POOL_SCRIPT, str(archive_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["forked"] and answer["start_method"] == "fork" and answer["parents"] == [True], answer
    assert answer["same"] and answer["files"] > 0, answer


def test_no_pool_is_forked_once_a_thread_runs(monkeypatch):
    """Forked beside a running thread, a child inherits locks that thread holds: then the default
    pool is left to start as before (spawned, at its first batch)."""
    monkeypatch.setattr(executors, "_shared", {})
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert executors.fork_default_pool() is False
        assert executors._shared == {}
    finally:
        stop.set()
        thread.join()


def test_partitions_side_by_side_only_when_a_location_is_remote():
    local, remote = parse_location("/tmp/store", "store"), parse_location("gs://bucket/store", "store")
    assert executors.partitions_at_once(local, local) == 1
    assert executors.partitions_at_once(local, remote) == executors.REMOTE_PARTITIONS_AT_ONCE > 1


def test_map_in_order_runs_side_by_side_and_keeps_the_order():
    # All three wait for each other: one after another, the barrier would break.
    barrier = threading.Barrier(3, timeout=10)

    def slowest_first(n: int) -> int:
        barrier.wait()
        return n * n

    assert list(executors.map_in_order(slowest_first, [3, 1, 2], at_once=3)) == [9, 1, 4]
    threads: list[str] = []
    assert list(executors.map_in_order(lambda n: threads.append(threading.current_thread().name) or n, [1, 2], 1)) == [1, 2]
    assert set(threads) == {threading.current_thread().name}  # one at a time: in the caller's thread


def test_map_in_order_raises_the_error_of_an_item():
    def fails_on_two(n: int) -> int:
        if n == 2:
            raise ValueError("two is bad")
        return n

    results = executors.map_in_order(fails_on_two, [1, 2, 3], at_once=2)
    assert next(results) == 1
    with pytest.raises(ValueError, match="two is bad"):
        next(results)


def test_a_worker_virtualizes_from_the_head_it_is_given(rows_and_source, archive_dir, monkeypatch):
    """The head a parent fetched travels with the row: the worker fetches nothing of the file."""
    rows, source = rows_and_source
    row = next(r for r in rows if 0 < int(r["size"]) < HEAD_BYTES)
    (path,) = archive_dir.rglob(row["url"].rsplit("/", 1)[-1])
    expected = virtualize.virtualize_with_head(row, source, None)

    def no_fetch(self, start, end):
        raise OSError(f"fetched bytes {start}-{end}")

    monkeypatch.setattr(OneFileStore, "_fetch", no_fetch)
    assert "fetched bytes" in virtualize.virtualize_with_head(row, source, None).error
    given = virtualize.virtualize_with_head(row, source, path.read_bytes())
    assert isinstance(given, virtualize.VirtualizedFile), given
    assert (given.group, given.chunk_refs, sorted(given.dataset.variables)) == (expected.group, expected.chunk_refs, sorted(expected.dataset.variables))
