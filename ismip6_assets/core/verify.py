"""Deep verification: do a partition's stored chunk references still read the source's values?

The shallow reconciliation trusts fingerprints (mtime+size on local disks): a file rewritten in
place with its size and mtime kept, or a reference written wrong, passes it. This reads sampled
virtual chunks through the store and compares each, decoded, with the same region of the source.

**By position, never by name.** The fixes rename dims (``nx`` → ``x``), split one contiguous chunk
into one per time step and re-encode time, but no fix moves a value: element ``i, j, k`` of a stored
array is element ``i, j, k`` of the source variable of the same name. So a stored chunk's region is
computed from the *stored* array's shape and chunk grid and applied to the source by position.
Both sides are read raw (no CF masking or scaling): the stored array through zarr, the source as stored
(h5py, or ``decode_cf=False``); coordinates (loaded inline, our bytes, time re-encoded) are not compared.

**Bounded by default.** `SamplePolicy` ``sample`` (the default) reads the last chunk (where a
truncated file shows) of up to ``max_variables`` variables, in an order that rotates with the
store's snapshot so successive checks cover different variables, skipping chunks that would take
the partition past ``budget_bytes``. A chunk's cost is twice its stored length (the store read and
the source read of the same bytes); Icechunk's ``getsize`` gives a virtual chunk's length from the
manifest without fetching it. ``always`` reads first, middle and last chunk of every array.
A sample that read nothing is itself a finding: a check must not pass on what it did not look at.

**Time and grid too.** Each group of the sample must have a time that decodes to dates in
1850–2200 and x/y of the EPSG:3031 grid in metres (stored_coordinates.py): findings ``bad_time`` /
``bad_grid`` name the group.

**The view too.** One field of the partition's view (views.py), rotating like the variables, is one
of the sample: its last stored chunk is compared with the source year by year (the source step of
each model year from the variable group's time, as the view was built); a year the source lacks
must read NaN.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import h5py
import icechunk
import numpy as np
import xarray as xr
import zarr
from zarr.core.sync import sync

from ismip6_assets.core import nonblocking
from ismip6_assets.core.formats import HDF5_MAGIC
from ismip6_assets.core.locations import Location
from ismip6_assets.core.store import BRANCH
from ismip6_assets.core.store_state import PartitionState
from ismip6_assets.core.stored_coordinates import member_names, coordinate_findings
from ismip6_assets.core.view_writer import field_of_group
from ismip6_assets.core.views import TIME, VARIABLES_ATTR, VIEW_ROOT, YEAR, experiment_of_view, model_years
from ismip6_assets.core.virtualize import COORDINATE_NAMES, one_line

# The fingerprint still matches, so no run rewrites such a group by itself: a changed fingerprint
# (touch the file) or the group gone (missing) is what makes the sensor request its rewrite.
REPAIR_HINT = "bad_ref: the source changed under an unchanged fingerprint; touch the file (or delete the group) and the next run rewrites it"
# A group written before its time or grid quirk was decoded keeps its fingerprint too.
COORDINATE_HINT = (
    "bad_time/bad_grid: the group holds a time or x/y no reader can place; "
    "delete the group (or touch its file) and the next run rewrites it with the current fixes"
)
DEFAULT_SAMPLE_VARIABLES = 8
DEFAULT_SAMPLE_BUDGET_BYTES = 16 * 2**20
COMPARE_THREADS = 8


@dataclass(frozen=True)
class SamplePolicy:
    """How much of a partition the deep check reads."""

    mode: Literal["sample", "always", "never"] = "sample"
    max_variables: int = DEFAULT_SAMPLE_VARIABLES
    budget_bytes: int = DEFAULT_SAMPLE_BUDGET_BYTES
    chunks_per_array: int = 3  # "always": first, middle and last chunk of every array


@dataclass
class Verification:
    """What the deep check read, and each array whose references do not match the source."""

    policy: SamplePolicy = field(default_factory=SamplePolicy)
    groups: int = 0  # groups with at least one chunk read
    chunks: int = 0
    bytes_read: int = 0
    candidates: int = 0  # arrays that could have been sampled
    read: list[dict] = field(default_factory=list)  # rows: item, chunk, bytes
    findings: list[dict] = field(default_factory=list)  # rows: category "bad_ref", item, reason


@dataclass(frozen=True)
class _Candidate:
    group: str
    name: str
    url: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]

    @property
    def item(self) -> str:
        return f"{self.group}/{self.name}"


def sample_chunks(shape: tuple[int, ...], chunks: tuple[int, ...], n: int = 3) -> list[tuple[int, ...]]:
    """First, middle and last chunk of the grid (the last ``n`` of them): the last is where a truncated file shows."""
    grid = [max(1, math.ceil(s / c)) for s, c in zip(shape, chunks, strict=True)]
    total = math.prod(grid)
    picks = sorted({0, total // 2, total - 1})[-n:] if n > 0 else []
    return [tuple(int(i) for i in np.unravel_index(p, grid)) for p in picks]


def chunk_region(shape: tuple[int, ...], chunks: tuple[int, ...], coords: tuple[int, ...]) -> tuple[slice, ...]:
    """The positional region of chunk ``coords`` in an array of ``shape`` chunked by ``chunks``."""
    return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(coords, chunks, shape, strict=True))


def _chunk_key(group: str, name: str, coords: tuple[int, ...]) -> str:
    return f"{group}/{name}/c/" + "/".join(map(str, coords))


@contextmanager
def _open_source(source: Location, url: str) -> Iterator[Callable[[str], Any]]:
    """The source file's variables by name (None when absent), each with ``.shape`` and a
    positional ``[region]`` read of raw values.

    NetCDF4 (HDF5) through h5py, which reads the region's chunks and nothing else; xarray's open
    of the same file through h5netcdf (the engine for file objects, so every gs:// source) read
    every variable's attributes and indexed the coordinates first, work the check does not use and
    which dominated its CPU on gs://. NetCDF3 through xarray's scipy backend.
    """
    opened = source.open_for_reading(source.relpath_of(url))
    if _is_hdf5(opened):
        with h5py.File(opened, "r") as f:
            yield lambda name: f[name] if isinstance(f.get(name), h5py.Dataset) else None
        return
    with xr.open_dataset(opened, decode_cf=False, mask_and_scale=False, decode_times=False, create_default_indexes=False) as ds:
        yield ds.variables.get


def _is_hdf5(opened) -> bool:
    if isinstance(opened, str):
        with open(opened, "rb") as f:
            return f.read(len(HDF5_MAGIC)) == HDF5_MAGIC
    head = opened.read(len(HDF5_MAGIC))
    opened.seek(0)
    return head == HDF5_MAGIC


def _candidates(session: icechunk.Session, group: str, url: str) -> list[_Candidate]:
    """The data arrays of ``group``: coordinates are loaded inline and re-encoded (our bytes, not the
    source's), and ``year`` is ours (fixes/model_years.py). Only the data arrays' metadata is read."""
    candidates = []
    for name in member_names(session.store, group):
        if name in COORDINATE_NAMES or name == YEAR:
            continue
        array = zarr.open_array(session.store, path=f"{group}/{name}", mode="r", zarr_format=3)
        if array.ndim:
            candidates.append(_Candidate(group, name, url, tuple(array.shape), tuple(array.chunks)))
    return candidates


def compare_chunk(session: icechunk.Session, source: Location, candidate: _Candidate, coords: tuple[int, ...]) -> str:
    """'' when the stored chunk decodes to the source's values at the same position, else why not."""
    region = chunk_region(candidate.shape, candidate.chunks, coords)
    array = zarr.open_array(session.store, path=f"{candidate.group}/{candidate.name}", mode="r", zarr_format=3)
    try:
        actual = np.asarray(array[region])
    except Exception as exc:  # noqa: BLE001 - any read error is the finding
        return f"chunk {coords} unreadable: {one_line(exc)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _open_source(source, candidate.url) as variables:
            variable = variables(candidate.name)
            if variable is None:
                return f"{candidate.name} not in the source file"
            if tuple(variable.shape) != candidate.shape:
                return f"shape {candidate.shape} in the store, {tuple(variable.shape)} in the source"
            expected = np.asarray(variable[region])
    if not _same(actual, expected):
        return f"chunk {coords} decodes to other values than the source"
    return ""


def _rotation(seed: str, item: str) -> str:
    return hashlib.sha256(f"{seed} {item}".encode()).hexdigest()


def _cost(session: icechunk.Session, candidate: _Candidate, coords: tuple[int, ...]) -> int:
    """Bytes the comparison fetches: the chunk through the store and the same range of the source.

    A chunk never written (an unallocated HDF5 chunk) costs nothing: both sides read the fill value.
    """
    path = f"/{candidate.group}/{candidate.name}"
    if nonblocking.chunk_type(session, path, coords) == icechunk.ChunkType.uninitialized:
        return 0
    return 2 * int(sync(session.store.getsize(_chunk_key(candidate.group, candidate.name, coords))))


def _plan(session: icechunk.Session, candidates: Iterable[_Candidate], policy: SamplePolicy, result: Verification) -> tuple[list[tuple], int]:
    """(candidate, chunk coords, cost) to compare: in sample mode, one chunk a variable within the
    budget; and how many candidates were looked at (in sample mode it stops once the sample is full)."""
    picks, planned, seen = [], 0, 0
    for candidate in candidates:
        seen += 1
        if policy.mode == "sample" and len(picks) >= policy.max_variables:
            break
        for coords in sample_chunks(candidate.shape, candidate.chunks, 1 if policy.mode == "sample" else policy.chunks_per_array):
            try:
                cost = _cost(session, candidate, coords)
            except Exception as exc:  # noqa: BLE001 - a reference the store cannot size is a finding
                result.findings.append({"category": "bad_ref", "item": candidate.item, "reason": f"chunk {coords} unreadable: {one_line(exc)}"})
                break
            if policy.mode == "sample" and planned + cost > policy.budget_bytes:
                continue  # too big for what is left of the budget; a smaller one may fit
            picks.append((candidate, coords, cost))
            planned += cost
    return picks, seen


def _compare_or_reason(session: icechunk.Session, source: Location, candidate: _Candidate, coords: tuple[int, ...]) -> str:
    try:
        return compare_chunk(session, source, candidate, coords)
    except Exception as exc:  # noqa: BLE001 - a source that no longer opens is a finding, not a crashed check
        return f"could not verify: {one_line(exc)}"


def verify_partition(
    repo: icechunk.Repository,
    source: Location,
    state: PartitionState,
    urls: Iterable[str],
    policy: SamplePolicy | None = None,
    session: icechunk.Session | None = None,
) -> Verification:
    """Deep-check the partition's groups built from `urls` (those reconciliation found current),
    on the branch head or in `session` (the one `state` was read in)."""
    policy = policy or SamplePolicy()
    result = Verification(policy=policy)
    if policy.mode == "never":
        return result
    wanted = set(urls)
    session = session or repo.readonly_session(branch=BRANCH)
    groups = sorted((g for g in state.groups.values() if g.url in wanted), key=lambda g: g.group)
    if policy.mode == "sample":
        # Rotated by group (a variable group holds one data array, named as the group ends) and
        # opened only until the sample is full: opening every group's arrays to pick a few of
        # them was most of the check's time.
        seed = session.snapshot_id
        groups.sort(key=lambda g: _rotation(seed, f"{g.group}/{g.group.rsplit('/', 1)[-1]}"))
    opened: list[int] = []

    def candidates() -> Iterator[_Candidate]:
        for position, stored in enumerate(groups):
            opened.append(position)
            try:
                yield from _candidates(session, stored.group, stored.url)
            except Exception as exc:  # noqa: BLE001 - a group that no longer opens is a finding, not a crashed check
                result.findings.append({"category": "bad_ref", "item": stored.group, "reason": f"could not verify: {one_line(exc)}"})

    if state.view_sources is not None and wanted:  # one of the sample's variables is the view's
        _sample_view(session, source, state, policy, result)
    remaining = policy
    if policy.mode == "sample":
        remaining = dataclasses.replace(policy, max_variables=policy.max_variables - result.chunks, budget_bytes=policy.budget_bytes - result.bytes_read)
    picks, result.candidates = _plan(session, candidates(), remaining, result)
    result.candidates += len(groups) - len(opened)  # groups not opened: one data array each
    # The comparisons open source files: in an object store each is a few round trips, so they
    # overlap there. On local disk they run one after another: threads would gain nothing (HDF5
    # holds a process-wide lock) and netCDF4's C library is not thread-safe.
    threads = 1 if source.local_dir is not None else max(1, min(COMPARE_THREADS, len(picks)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        problems = list(pool.map(lambda pick: _compare_or_reason(session, source, *pick[:2]), picks))
    groups, failed = set(), set()
    for (candidate, coords, cost), problem in zip(picks, problems, strict=True):
        result.chunks += 1
        result.bytes_read += cost
        groups.add(candidate.group)
        result.read.append({"item": candidate.item, "chunk": str(coords), "bytes": cost})
        if problem and candidate.item not in failed:  # one finding an array
            failed.add(candidate.item)
            result.findings.append({"category": "bad_ref", "item": candidate.item, "reason": problem})
    result.findings += _coordinate_findings(session, sorted(groups))
    # One finding per cause: a view field over a group already found bad reads the same bad bytes
    # (or the same bad time).
    bad_groups = {g for f in result.findings if experiment_of_view(f["item"]) is None for g in (f["item"], f["item"].rsplit("/", 1)[0])}
    result.findings = [f for f in result.findings if experiment_of_view(f["item"]) is None or _view_source_group(f["item"]) not in bad_groups]
    result.groups = len(groups)
    if wanted and result.chunks == 0 and not result.findings:
        reason = (
            f"every sampled chunk is larger than the budget of {policy.budget_bytes:,} bytes" if result.candidates else "no data array in the stored groups"
        )
        result.findings.append({"category": "not_verified", "item": state_label(state), "reason": f"the deep sample read nothing: {reason}"})
    return result


def _coordinate_findings(session: icechunk.Session, groups: list[str]) -> list[dict]:
    """Time and grid of the sampled groups (stored_coordinates.py): inline arrays, no source read."""
    findings = []
    for group in groups:
        try:
            findings += coordinate_findings(session.store, group)
        except Exception as exc:  # noqa: BLE001 - coordinates that do not read are the finding
            findings.append({"category": "bad_time", "item": group, "reason": f"could not read time/x/y: {one_line(exc)}"})
    return findings


def repair_hint(findings: list[dict]) -> str:
    """What to do about the findings, one sentence a category found."""
    categories = {f["category"] for f in findings}
    hints = [REPAIR_HINT] if "bad_ref" in categories else []
    if categories & {"bad_time", "bad_grid"}:
        hints.append(COORDINATE_HINT)
    return " ".join(hints)


def _last_chunk(store, path: str) -> tuple[int, ...] | None:
    """The last chunk of the array that is stored (a view's last years can be missing for a variable)."""

    async def read():
        found = []
        async for coords, *_columns in store.array_chunk_iterator(path):
            found.extend(map(tuple, coords.tolist()))
        return max(found) if found else None

    return sync(read())


def _sample_view(session: icechunk.Session, source: Location, state: PartitionState, policy: SamplePolicy, result: Verification) -> None:
    """Compare the last stored chunk of one field of the view with the source, year by year.

    The view's year of each source step comes from the variable group's time, as the view was
    built (views.model_years); a year the source lacks must read NaN (or the fill value)."""
    view = f"{VIEW_ROOT}/{state_label(state)}"  # the view of the experiment group the state's groups sit in
    item = view
    try:
        names = sorted(set(zarr.open_group(session.store, path=view, mode="r", zarr_format=3).attrs.get(VARIABLES_ATTR, [])) & set(state.groups))
        if not names:
            return
        name = min(names, key=lambda n: hashlib.sha256(f"{session.snapshot_id} {n}".encode()).hexdigest())
        item, stored = f"{view}/{name}", state.groups[name]
        coords = _last_chunk(session.store, item)
        if coords is None:
            return
        cost = 2 * int(sync(session.store.getsize(_chunk_key(view, name, coords))))
        if policy.mode == "sample" and result.bytes_read + cost > policy.budget_bytes:
            return
        array = zarr.open_array(session.store, path=item, mode="r", zarr_format=3)
        region = chunk_region(array.shape, array.chunks, coords)
        actual = np.asarray(array[region])
        dims = tuple(array.metadata.dimension_names or ())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _open_source(source, stored.url) as variables:
                variable = variables(name)
                if TIME not in dims:
                    problem = "" if _same(actual, np.asarray(variable[region])) else f"chunk {coords} reads other values than the source"
                else:
                    axis = dims.index(TIME)
                    field = sync(field_of_group(session.store, stored.group, name))[1]
                    step_of = {int(y): i for i, y in enumerate(model_years(field))}
                    years = np.asarray(zarr.open_array(session.store, path=f"{view}/{YEAR}", mode="r")[region[axis]])
                    problem = ""
                    for k, year in enumerate(years.tolist()):
                        got = np.take(actual, k, axis=axis)
                        if year in step_of:
                            rest = region[:axis] + (step_of[year],) + region[axis + 1 :]
                            ok = _same(got, np.asarray(variable[rest]))
                        else:
                            ok = bool(np.isnan(got).all()) if got.dtype.kind == "f" else bool((got == array.metadata.fill_value).all())
                        if not ok:
                            problem = f"chunk {coords}, year {year}, reads other values than the source"
                            break
    except Exception as exc:  # noqa: BLE001 - a view that does not read is the finding
        result.findings.append({"category": "bad_ref", "item": item, "reason": f"could not verify: {one_line(exc)}"})
        return
    result.chunks += 1
    result.bytes_read += cost
    result.read.append({"item": item, "chunk": str(coords), "bytes": cost})
    if problem:
        result.findings.append({"category": "bad_ref", "item": item, "reason": problem})


def _view_source_group(item: str) -> str:
    """``combined/INST_MODEL/EXP/var`` -> ``INST_MODEL/EXP/var``, the group the view field is made of."""
    return f"{experiment_of_view(item)}/{item.rstrip('/').rsplit('/', 1)[-1]}"


def _same(actual: np.ndarray, expected: np.ndarray) -> bool:
    return actual.shape == expected.shape and np.array_equal(actual, expected, equal_nan=actual.dtype.kind == "f")


def state_label(state: PartitionState) -> str:
    """The experiment group of a partition's stored groups, for a finding about all of them."""
    first = next(iter(state.groups.values()), None)
    return first.group.rsplit("/", 1)[0] if first else ""
