"""The deep check compares by position: no false alarm after any fix, and a sabotaged reference is found.

For every fix in ``fixes/`` a quirk partition that the fix changes is stored through the real
pipeline and must check OK with the default sample; then one reference is pointed at other bytes of
its file and the same default sample must name that array. The whole quirk archive through `ismip6
run` (Dagster, the check as users run it) exits 0.
"""

from __future__ import annotations

import os

import dagster as dg
import pytest
import zarr
from zarr.core.sync import sync

from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.cli.runs import run_partition
from ismip6_assets.core.sample_archive import sample_dataset, write_netcdf
from ismip6_assets.core.sample_quirks import (
    CONTIGUOUS_PARTITION,
    GRID_PARTITION,
    SENTINEL_PARTITION,
    UCIJPL_PARTITION,
    UNITLESS_PARTITION,
    write_quirk_archive,
)
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.reconcile import store_diff
from ismip6_assets.core.store import commit_partition, open_repository
from ismip6_assets.core.store_state import read_partition_state
from ismip6_assets.core.verify import SamplePolicy, chunk_region, sample_chunks, verify_partition
from ismip6_assets.core.virtualize import virtualize_rows
from tests.conftest import open_plain_repo
from tests.quirks_support import copy_partition
from tests.test_reconcile_deep import check

# fix -> (partition it changes, array to sabotage)
FIX_CASES = {
    "NormalizeTime": (UNITLESS_PARTITION, "lithk"),  # time re-encoded from unit-less offsets
    "StandardGrid": (GRID_PARTITION, "lithk"),  # dims (time, ny, nx) renamed to (time, y, x): the false alarm seen
    "StandardGrid+SplitContiguousTime": (UCIJPL_PARTITION, "lithk"),  # renamed and split per time step
    "SplitContiguousTime": (CONTIGUOUS_PARTITION, "orog"),  # NetCDF3 contiguous, split per time step
    "SentinelValue+VariableType": (SENTINEL_PARTITION, "orog"),  # sentinel attrs, ISMIP6 type
}


@pytest.fixture(scope="module")
def quirk_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("quirks") / "archive"
    write_quirk_archive(root)
    return root


def test_chunk_regions_are_positional_and_clipped():
    assert chunk_region((5, 191, 191), (1, 191, 191), (4, 0, 0)) == (slice(4, 5), slice(0, 191), slice(0, 191))
    assert chunk_region((5,), (2,), (2,)) == (slice(4, 5),)
    assert sample_chunks((5, 191, 191), (1, 191, 191), 1) == [(4, 0, 0)]


def _deep_check(archive_dir, store_dir, partition: str, policy: SamplePolicy | None = None):
    """What the reconciliation check computes (checks.py): the diff against a fresh listing, then the sample."""
    source = parse_location(str(archive_dir), "source")
    repo = open_repository(parse_location(str(store_dir), "store"), source)
    key = PartitionKey.parse(partition)
    state = read_partition_state(repo, key)
    diff = store_diff(key, list_archive(source, key).rows, state)
    return diff, verify_partition(repo, source, state, diff.ok, policy)


@pytest.mark.parametrize("fix", sorted(FIX_CASES))
def test_every_fix_checks_ok_and_a_wrong_offset_is_found(fix, quirk_archive, tmp_path):
    # Through Dagster and the CLI, the whole quirk archive is checked below
    # (test_ismip6_run_on_the_quirk_archive_...); here each fix's partition goes through the library
    # pipeline the assets call, so that its sabotage stays cheap.
    partition, variable = FIX_CASES[fix]
    archive_dir = copy_partition(quirk_archive, tmp_path / "archive", partition)
    store_dir = tmp_path / "store"
    source = parse_location(str(archive_dir), "source")
    rows = list_archive(source, PartitionKey.parse(partition)).rows
    result = virtualize_rows(rows.to_dict("records"), source)
    assert not result.failures, result.failures
    commit_partition(open_repository(parse_location(str(store_dir), "store"), source), PartitionKey.parse(partition), result.files, [], [])

    diff, ok = _deep_check(archive_dir, store_dir, partition)
    assert diff.status == "OK" and ok.findings == [], ok.findings
    assert ok.chunks >= 1 and ok.bytes_read > 0

    # Point the last chunk of `variable` at the file's first bytes: the same length, other bytes.
    inst, model, exp = partition.split("/")
    group = f"{inst}_{model}/{exp}/{variable}"
    repo = open_plain_repo(store_dir, archive_dir)
    session = repo.writable_session("main")
    array = zarr.open_array(session.store, path=f"{group}/{variable}", mode="r", zarr_format=3)
    last = sample_chunks(array.shape, array.chunks, 1)[0]
    key = f"{group}/{variable}/c/" + "/".join(map(str, last))
    length = int(sync(session.store.getsize(key)))
    (path,) = (archive_dir / "Projection-AIS" / partition).glob(f"*{variable}_AIS_*.nc")
    session.store.set_virtual_ref(key, f"file://{os.path.realpath(path)}", offset=0, length=length)
    session.commit("sabotage: a reference at the wrong offset")

    diff, bad = _deep_check(archive_dir, store_dir, partition)
    assert diff.status == "OK" and not diff.stale  # the fingerprints cannot tell
    assert [f["item"] for f in bad.findings] == [f"{group}/{variable}"], bad.findings

    # A source truncated in place (its mtime put back) is ERROR too: the refs past its new end.
    before = path.stat()
    path.write_bytes(path.read_bytes()[: before.st_size // 2])
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    diff, truncated = _deep_check(archive_dir, store_dir, partition, SamplePolicy("always"))
    assert diff.status == "ERROR" or truncated.findings


def _big_partition(root, n_files: int) -> str:
    """One partition of ``n_files`` variables (the real archive's partitions hold ~23)."""
    folder = root / "Projection-AIS" / "AWI" / "PISM1" / "exp05"
    folder.mkdir(parents=True)
    names = [f"lithk{i:02d}" for i in range(n_files)]  # non-standard names: the index takes any var_AIS_... file
    for name in names:
        ds = sample_dataset("lithk", name, 3, 61).rename({"lithk": name})
        write_netcdf(ds, folder / f"{name}_AIS_AWI_PISM1_exp05.nc", "chunked")
    return "AWI/PISM1/exp05"


@pytest.mark.slow
def test_a_partition_of_26_files_gets_a_bounded_sample_by_default(tmp_path, instance):
    key = _big_partition(tmp_path / "archive", 26)
    archive = ArchiveResource(source_url=str(tmp_path / "archive"), store_url=str(tmp_path / "store"))
    instance.add_dynamic_partitions("model_experiment", [key])
    assert run_partition(archive, instance, key).status == "OK"

    sampled = check(archive, instance, key)
    assert sampled.passed and sampled.metadata["ok"].value == 26
    assert sampled.metadata["deep_mode"].value == "sample"
    assert sampled.metadata["deep_chunks"].value == 8 and sampled.metadata["deep_arrays"].value == 26
    assert 0 < sampled.metadata["deep_bytes"].value <= sampled.metadata["deep_budget_bytes"].value
    assert "deep_sample" in sampled.metadata and "bytes read" in sampled.description

    # A budget smaller than any chunk reads nothing, and a sample that read nothing fails.
    starved = check(archive, instance, key, sample_budget_bytes=100)
    assert not starved.passed and starved.metadata["deep_chunks"].value == 0
    assert "read nothing" in starved.metadata["findings"].value


@pytest.mark.slow
def test_ismip6_run_on_the_quirk_archive_exits_0_warn_only_where_failures_are_recorded(quirk_archive, tmp_path, monkeypatch, capsys):
    from ismip6_assets.cli import main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # an ephemeral instance, not the repo's
    assert main(["run", "--source", str(quirk_archive), "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert lines and all((" OK " in line) or (" WARN " in line and "failures=0" not in line) for line in lines), out
    assert "0 ERROR, 0 FAILED" in out
