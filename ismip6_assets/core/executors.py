"""Where per-file virtualization runs: inline, threads, local processes or a Dask cluster.

Chosen by ``ISMIP6_EXECUTOR`` (read by the Dagster layer, passed here as an `ExecutorSpec`) and handed to `virtualize.virtualize_rows` / `virtualize_partitions` as a plain
`concurrent.futures.Executor`, so the library never knows which one it got:

- ``processes[:N]`` (default): local processes. HDF5 parsing holds a process-wide lock, so on local
  files threads do not overlap; processes do (threads were no faster than serial on the benchmark
  files, two processes nearly twice as fast: bench/HISTORY.md, "Measurements behind the code").
- ``threads[:N]``: for gs:// sources, where a file costs mostly network round trips, not CPU.
- ``serial``: inline, in the calling thread.
- ``dask://HOST:PORT`` (or ``tcp://HOST:PORT``): a running Dask distributed scheduler, for when one
  machine is not enough; its workers need this package installed and read access to the source.

`read_scheduler` gives Dask's scheduler for array reads (the sea level) on the same setting.

One executor per process and spec, created on first use and reused by every partition (a fresh
pool per partition would pay its start-up each time: spawning the workers and importing
VirtualiZarr in each). A process pool is only started for a batch of `POOL_MIN_FILES` or more; a running one
is always used. A warm run worker forks the default pool first thing (`fork_default_pool`), so its
workers import nothing again.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from ismip6_assets.core.locations import ConfigError, Location

T = TypeVar("T")
R = TypeVar("R")

EXECUTOR_ENV = "ISMIP6_EXECUTOR"
DEFAULT_SPEC = "processes"
# Below this many files a partition is virtualized inline unless a pool is already running: a pool's
# start-up is paid back by what it saves a file only over about this many files, several times what
# a typical partition holds (bench/HISTORY.md, "Measurements behind the code").
POOL_MIN_FILES = 100
# dask:// means tcp://; the others are Dask's own comm schemes (inproc: a LocalCluster in this process).
DASK_SCHEMES = ("dask", "tcp", "tls", "inproc", "ucx", "ws", "wss")


@dataclass(frozen=True)
class ExecutorSpec:
    kind: str  # serial | threads | processes | dask
    workers: int = 0  # 0: one per CPU
    address: str = ""  # dask scheduler

    def __str__(self) -> str:
        if self.kind == "dask":
            return self.address
        return f"{self.kind}:{self.workers}" if self.workers else self.kind


def parse_spec(text: str | None) -> ExecutorSpec:
    """Parse ``serial``, ``threads[:N]``, ``processes[:N]`` or a Dask scheduler address (``dask://HOST:PORT``)."""
    text = (text or DEFAULT_SPEC).strip()
    scheme, sep, rest = text.partition("://")
    if sep and scheme in DASK_SCHEMES:
        if not rest.strip("/"):
            raise ConfigError(f"{EXECUTOR_ENV}={text!r}: give the scheduler as dask://HOST:PORT")
        return ExecutorSpec("dask", address=f"{'tcp' if scheme == 'dask' else scheme}://{rest.rstrip('/')}")
    kind, _, n = text.partition(":")
    if kind not in ("serial", "threads", "processes"):
        raise ConfigError(f"{EXECUTOR_ENV}={text!r}: use serial, threads[:N], processes[:N] or dask://HOST:PORT")
    if n and not (n.isdigit() and int(n) > 0):
        raise ConfigError(f"{EXECUTOR_ENV}={text!r}: the worker count after ':' must be a positive integer")
    return ExecutorSpec(kind, int(n) if n else 0)


class SerialExecutor(Executor):
    """Runs each call inline; `map` is then plain `map` with futures' error semantics."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future, as executors do
            future.set_exception(exc)
        return future


def _warm_worker() -> None:
    # Imported once per worker, not once per file: otherwise the first virtualization in each worker
    # pays for importing VirtualiZarr and its parsers.
    import ismip6_assets.core.virtualize  # noqa: F401
    import virtualizarr  # noqa: F401


def make_executor(spec: ExecutorSpec) -> Executor:
    """A new executor for `spec`; the caller owns it (see `shared_executor` for the reused one)."""
    workers = spec.workers or os.cpu_count() or 1
    if spec.kind == "serial":
        return SerialExecutor()
    if spec.kind == "threads":
        return ThreadPoolExecutor(workers, thread_name_prefix="ismip6-virtualize")
    if spec.kind == "processes":
        # spawn, not fork: the parent runs Tokio (icechunk, obstore) and zarr's event-loop threads,
        # and a forked child inheriting their locks can hang.
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_worker)
    from distributed import Client

    # pure=False: a file re-virtualized after it changed must run again, not come from Dask's cache.
    return Client(spec.address, set_as_default=False).get_executor(pure=False)


_shared: dict[ExecutorSpec, Executor] = {}
_lock = threading.Lock()


def _threads() -> int:
    """This process's threads, native ones (Tokio's) included where /proc tells."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def fork_default_pool() -> bool:
    """Start the default spec's process pool now, by fork: its workers begin with every module this
    process imported, where spawned ones import VirtualiZarr and its stack again (seconds of CPU
    each, bench/RESULTS.md). Only safe in a process that has one thread and no Rust runtime yet
    (a forked child inherits Tokio's and zarr's locks, held by threads it does not have): a warm
    run worker, first thing (run_worker.py). Elsewhere it does nothing; False then."""
    if _threads() > 1:
        return False
    spec = parse_spec(DEFAULT_SPEC)
    with _lock:
        if spec in _shared:
            return False
        pool = ProcessPoolExecutor(os.cpu_count() or 1, mp_context=multiprocessing.get_context("fork"), initializer=_warm_worker)
        pool.submit(int)  # a fork pool starts all its workers at its first task, here and now
        _shared[spec] = pool
    return True


def shared_executor(spec: ExecutorSpec) -> Executor:
    """This process's executor for `spec`, created once."""
    with _lock:
        if spec not in _shared:
            _shared[spec] = make_executor(spec)
        return _shared[spec]


def executor_for(n_files: int, spec: ExecutorSpec) -> Executor | None:
    """The executor for a batch of `n_files`, or None to virtualize inline (see `POOL_MIN_FILES`)."""
    if spec.kind == "serial" or n_files <= 1:
        return None
    if spec.kind == "processes" and n_files < POOL_MIN_FILES and spec not in _shared:
        return None
    return shared_executor(spec)


# Partitions a read-only step (the reconciliation check) reads side by side when the store or the
# source is on object storage: there each partition's reads wait on round trips, not on the CPU. On
# local disk they are CPU, and threads would only contend for the GIL: one after another.
REMOTE_PARTITIONS_AT_ONCE = 8


def partitions_at_once(*locations: Location) -> int:
    """How many partitions to read side by side for `locations` (see `REMOTE_PARTITIONS_AT_ONCE`)."""
    return REMOTE_PARTITIONS_AT_ONCE if any(loc.scheme != "file" for loc in locations) else 1


def map_in_order(fn: Callable[[T], R], items: Iterable[T], at_once: int) -> Iterator[R]:
    """``fn`` of each item, up to `at_once` running together, yielded in the items' order as each
    is ready (a caller logs progress as it goes); the first error raised is raised here."""
    items = list(items)
    if at_once <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(min(at_once, len(items)), thread_name_prefix="ismip6-partition") as pool:
        yield from pool.map(fn, items)


@contextmanager
def alongside(fn: Callable[[T], R], at_once: int) -> Iterator[Callable[[T], Future[R]]]:
    """A ``submit(item)`` that starts ``fn(item)`` in a thread (up to `at_once`, at least one)
    while the caller goes on; leaving waits for what was submitted. For reads that need not hold
    up the work that produces their items (a commit's metadata read back while the next commit
    is made: Icechunk lets the GIL go while it writes)."""
    with ThreadPoolExecutor(max(1, at_once), thread_name_prefix="ismip6-alongside") as pool:
        yield lambda item: pool.submit(fn, item)


_read_pools: dict[int, ThreadPoolExecutor] = {}


def read_scheduler(spec: ExecutorSpec):
    """Dask's ``scheduler=`` for array reads through the store (the sea level's fields) on the
    setting per-file virtualization uses: ``serial`` Dask's synchronous scheduler; ``threads[:N]``
    and ``processes[:N]`` a thread pool of as many workers, this process's, created once (the reads
    are Icechunk's I/O and zlib, which release the GIL, so threads overlap where HDF5 parsing does
    not, and a pickled session per process would cost more than it saves); a Dask cluster its
    ``Client``, so the cluster's workers read and reduce the chunks."""
    if spec.kind == "serial":
        return "synchronous"
    if spec.kind == "dask":
        # distributed's ClientExecutor keeps its Client as `_client` (shutdown_shared closes it too).
        return shared_executor(spec)._client
    workers = spec.workers or os.cpu_count() or 1
    with _lock:
        if workers not in _read_pools:
            _read_pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="ismip6-read")
        return _read_pools[workers]


def shutdown_shared() -> None:
    """Stop every shared executor (a Dask client disconnects; the cluster keeps running)."""
    with _lock:
        executors = list(_shared.values()) + list(_read_pools.values())
        _shared.clear()
        _read_pools.clear()
    for executor in executors:
        executor.shutdown(wait=True)
        client = getattr(executor, "_client", None)
        if client is not None:
            client.close()


atexit.register(shutdown_shared)
