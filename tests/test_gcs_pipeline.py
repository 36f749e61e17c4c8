"""The pipeline on gs:// against the emulator: the CLI end to end, and concurrent writers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import icechunk
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from ismip6_assets.core.gcs import emulator_service_account_key, gcs_filesystem
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.store import commit_partition, open_repository
from ismip6_assets.core.store_state import load_store_state, read_partition_state
from ismip6_assets.core.virtualize import virtualize_rows
from tests.support.gcs_fixtures import emulator_access, emulator_host, BAD_FILE, STORE_BUCKET, gcs, gcs_archive, gcs_emulator  # noqa: F401 - fixtures

pytestmark = pytest.mark.gcs
ISMIP6 = str(Path(sys.executable).with_name("ismip6"))


def as_dates(values) -> list[tuple[int, int, int]]:
    if np.issubdtype(np.asarray(values).dtype, np.datetime64):
        return [(t.year, t.month, t.day) for t in pd.to_datetime(values)]
    return [(d.year, d.month, d.day) for d in values]


def ismip6(*args: str, emulator_url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ISMIP6_SOURCE_URL", "ISMIP6_STORE_URL")}
    env["STORAGE_EMULATOR_HOST"] = emulator_url
    return subprocess.run([ISMIP6, *args], capture_output=True, text=True, env=env, timeout=400)


def plain_repo(url: str, store_prefix: str) -> icechunk.Repository:
    """The store opened the way a user would: plain icechunk `gcs_storage`, no project code. The
    emulator is reached through object_store's service-account JSON (no secret in it)."""
    key = emulator_service_account_key(url)
    storage = icechunk.gcs_storage(bucket=STORE_BUCKET, prefix=store_prefix, service_account_key=key)
    # The repository's saved config names the container: a reader needs only credentials for it.
    assert "gs://ismip6/" in icechunk.Repository.fetch_config(storage).virtual_chunk_containers
    return icechunk.Repository.open(
        storage,
        authorize_virtual_chunk_access=icechunk.containers_credentials({"gs://ismip6/": icechunk.gcs_credentials(service_account_key=key)}),
    )


@pytest.mark.slow
def test_cli_run_and_reconcile_on_gcs(gcs, gcs_archive):
    store = "gs://ismip6-icechunk/store"
    run = ismip6("run", "--source", "gs://ismip6", "--store", store, emulator_url=gcs.url)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "0 ERROR, 0 FAILED" in run.stdout

    # Every stored variable reads back equal to its source file, through virtual refs gs://ismip6/...
    repo = plain_repo(gcs.url, "store")
    rows = list_archive(parse_location("gs://ismip6", "source", emulator_access())).rows
    session = repo.readonly_session("main")
    checked = 0
    for row in rows[~rows["skipped"]].itertuples():
        if row.url.endswith(BAD_FILE):
            continue
        stored = xr.open_zarr(session.store, group=row.group, consolidated=False)
        local = gcs_archive / row.url.removeprefix("gs://ismip6/")
        with xr.open_dataset(local, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as source:
            np.testing.assert_array_equal(stored[row.variable].values, source[row.variable].values)
            assert as_dates(stored["time"].values) == as_dates(source["time"].values)  # time is normalised on write
        assert stored.attrs["ismip6_source_url"] == row.url
        checked += 1
    assert checked == len(rows) - 2  # all but the skip-listed 0-byte file and the non-NetCDF one

    # The failure log and the index sit in the store bucket.
    fs = gcs_filesystem(emulator_access())
    logs = fs.find(f"{STORE_BUCKET}/store/failures")
    assert logs, "no failure JSON in gs://ismip6-icechunk/store/failures"
    failed = [r for p in logs for r in json.loads(fs.cat(p))]
    assert [r["url"] for r in failed] == [f"gs://ismip6/{BAD_FILE}"]
    index = pd.concat(pd.read_parquet(io.BytesIO(fs.cat(p))) for p in fs.find(f"{STORE_BUCKET}/store/index") if p.endswith(".parquet"))
    assert sorted(index["url"]) == sorted(rows["url"])
    assert index["fingerprint"].str.startswith("generation:").all()

    # The STAC Collection and one Item per partition, written in one batch (Location.put_many).
    stac = f"{STORE_BUCKET}/store/catalog/stac"
    collection = json.loads(fs.cat(f"{stac}/collection.json"))
    items = sorted(p.removeprefix(stac + "/") for p in fs.find(stac) if not p.endswith("/collection.json"))
    partitions = sorted(rows["partition_key"].unique())
    assert len(items) == len(partitions) == sum(link["rel"] == "item" for link in collection["links"])
    assert all(json.loads(fs.cat(f"{stac}/{item}"))["type"] == "Feature" for item in items)

    reconcile = ismip6("reconcile", "--source", "gs://ismip6", "--store", store, emulator_url=gcs.url)
    assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr[-3000:]
    assert "0 ERROR" in reconcile.stdout

    # The README's reader snippet, as written but for the two calls that must name the emulator.
    from tests.test_readme import snippets

    (code,) = snippets("Reading the store on Google Cloud Storage")
    key = emulator_service_account_key(gcs.url)
    production = ('icechunk.gcs_storage(bucket="ismip6-icechunk", prefix="store", from_env=True)', "icechunk.gcs_credentials(anonymous=True)")
    assert all(call in code for call in production)
    code = code.replace(production[0], f"icechunk.gcs_storage(bucket='ismip6-icechunk', prefix='store', service_account_key={key!r})")
    code = code.replace(production[1], f"icechunk.gcs_credentials(service_account_key={key!r})")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr[-3000:]
    (last,) = sorted((gcs_archive / "Projection-AIS/AWI/PISM1/exp05").glob("lithk_*.nc"))
    with xr.open_dataset(last) as source:
        assert np.isclose(float(printed.stdout.split()[0]), float(source.lithk.isel(time=-1).mean()), rtol=1e-6)


def _virtualized(keys: list[str]):
    source = parse_location("gs://ismip6", "source", emulator_access())
    listing = list_archive(source)
    return source, {k: virtualize_rows(listing.for_partition(k).to_dict("records"), source).files for k in keys}


def _write(session: icechunk.Session, key: str, files) -> None:
    root = zarr.open_group(session.store, mode="a", zarr_format=3)
    root.require_group(PartitionKey.parse(key).group).attrs["written_by"] = uuid.uuid4().hex
    for vf in files:
        vf.dataset.vz.to_icechunk(session.store, group=vf.group)


def test_concurrent_commit_is_detected_then_rebased(gcs, gcs_archive):
    """Two sessions from one head: the second commit must be refused (the ref's generation moved;
    this is the precondition passing through the proxy) and then land by rebase, keeping both."""
    keys = ["AWI/PISM1/exp05", "UCIJPL/ISSM/exp13", "DOE/MALI/expA1"]
    source, files = _virtualized(keys)
    store = parse_location(f"gs://{STORE_BUCKET}/{uuid.uuid4().hex[:8]}", "store", emulator_access())
    repo = open_repository(store, source)
    commit_partition(repo, PartitionKey.parse(keys[0]), files[keys[0]], [], [])  # the root group exists from here on

    first, second = repo.writable_session("main"), repo.writable_session("main")
    _write(first, keys[1], files[keys[1]])
    _write(second, keys[2], files[keys[2]])
    first.commit("first writer")
    with pytest.raises(icechunk.ConflictError):
        second.commit("second writer, without rebase")
    second.rebase(icechunk.ConflictDetector())
    second.commit("second writer, rebased")

    repo = open_repository(store, source)
    for key in keys:
        assert sorted(read_partition_state(repo, PartitionKey.parse(key)).groups) == sorted(f.variable for f in files[key])
    assert [s.message for s in repo.ancestry(branch="main")][:2] == ["second writer, rebased", "first writer"]


def test_same_partition_twice_is_a_conflict_not_a_loss(gcs, gcs_archive):
    """Both sessions write one experiment group: the rebase reports the conflict by path; the
    group on main is the first writer's, whole."""
    key = "DOE/MALI/expA1"
    source, files = _virtualized([key])
    store = parse_location(f"gs://{STORE_BUCKET}/{uuid.uuid4().hex[:8]}", "store", emulator_access())
    repo = open_repository(store, source)
    first, second = repo.writable_session("main"), repo.writable_session("main")
    _write(first, key, files[key])
    _write(second, key, files[key])
    first.commit("first writer")
    with pytest.raises(icechunk.RebaseFailedError) as raised:
        second.commit("second writer", rebase_with=icechunk.ConflictDetector(), rebase_tries=3)
    assert any("DOE_MALI/expA1" in c.path for c in raised.value.conflicts)
    state = read_partition_state(open_repository(store, source), PartitionKey.parse(key))
    assert sorted(state.groups) == sorted(f.variable for f in files[key])


def test_two_writers_at_once_both_land(gcs, gcs_archive):
    """commit_partition from two threads at once, sibling experiments of one model on a new store
    (they conflict on the model and root groups) and then the same partition twice: every commit
    lands, retried on the new head, and the store holds each group exactly once."""
    keys = ["AWI/PISM1/exp05", "AWI/PISM1/ctrl_proj_std"]
    source, files = _virtualized(keys)
    store = parse_location(f"gs://{STORE_BUCKET}/{uuid.uuid4().hex[:8]}", "store", emulator_access())
    open_repository(store, source)
    gcs.requests(clear=True)

    def race(work: list[str]) -> dict:
        barrier, results = threading.Barrier(len(work)), {}

        def one(i: int, key: str) -> None:
            repo = open_repository(store, source)
            barrier.wait()
            try:
                results[i] = commit_partition(repo, PartitionKey.parse(key), files[key], [], [])
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                results[i] = exc

        threads = [threading.Thread(target=one, args=(i, k)) for i, k in enumerate(work)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return results

    results = race(keys)
    assert all(isinstance(r, tuple) and r[0] for r in results.values()), results
    results = race([keys[0], keys[0]])
    assert not any(isinstance(r, Exception) for r in results.values()), results

    refused = [r for r in gcs.requests() if r[0] == "XML-PUT" and r[2] == 412]
    assert refused, "no write was refused by a precondition: the writers did not race"
    repo = open_repository(store, source)
    for key in keys:
        assert sorted(read_partition_state(repo, PartitionKey.parse(key)).groups) == sorted(f.variable for f in files[key])
    # The whole store's state, then through the snapshot-keyed file it left on gs://.
    first = load_store_state(repo, store)
    assert first.how == "full" and sorted(first.states) == sorted(keys)
    again = load_store_state(open_repository(store, source), store)
    assert again.how == "cached" and {k: sorted(s.groups) for k, s in again.states.items()} == {k: sorted(s.groups) for k, s in first.states.items()}


def _store_contents(repo: icechunk.Repository, source_prefix: str) -> dict[str, object]:
    """Every key of the store's main branch: documents as JSON with the source's URL prefix and
    fingerprints made location-neutral, chunks as the bytes a reader gets (virtual ones resolved)."""
    import asyncio

    from zarr.core.buffer import default_buffer_prototype

    def neutral(value, key: str = ""):
        if key == "ismip6_source_fingerprint":
            return "FINGERPRINT"
        if key == "ismip6_view_sources":  # variable -> the fingerprint of its group
            return sorted(value)
        if key == "ismip6_failures":
            return [{k: v for k, v in neutral(r).items() if k not in ("fingerprint", "timestamp")} for r in json.loads(value)]
        if isinstance(value, dict):
            return {k: neutral(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [neutral(v) for v in value]
        return value.replace(source_prefix, "gs://ismip6/") if isinstance(value, str) else value

    store = repo.readonly_session("main").store

    async def read() -> dict:
        keys = sorted([k async for k in store.list()])
        values = await asyncio.gather(*(store.get(k, prototype=default_buffer_prototype()) for k in keys))
        return {k: neutral(json.loads(v.to_bytes())) if k.endswith("zarr.json") else v.to_bytes() for k, v in zip(keys, values, strict=True)}

    return asyncio.run(read())


def test_concurrent_remote_path_at_latency_gives_the_local_store_key_by_key(gcs, gcs_archive, tmp_path):
    """The same archive through the whole pipeline from local disk into a local store, and from
    gs:// into gs:// with a delay on every request (files of a partition read at once, pinned to
    their generation): the two stores hold the same keys, documents and chunk bytes."""
    import dagster as dg

    from ismip6_assets.defs.resources import ArchiveResource
    from ismip6_assets.cli.runs import run_archive

    local = ArchiveResource(source_url=str(gcs_archive), store_url=str(tmp_path / "store"))
    remote = ArchiveResource(source_url="gs://ismip6", store_url=f"gs://{STORE_BUCKET}/{uuid.uuid4().hex[:8]}", storage_emulator_host=emulator_host())
    outcomes = {}
    for name, archive in (("local", local), ("remote", remote)):
        if name == "remote":
            gcs.set_delay(10)
            gcs.counts(clear=True)
        try:
            outcomes[name] = run_archive(archive, dg.DagsterInstance.ephemeral(), in_process=True)
        finally:
            gcs.set_delay(0)
    assert [(o.partition, o.status, o.files, o.written) for o in outcomes["remote"]] == [
        (o.partition, o.status, o.files, o.written) for o in outcomes["local"]
    ]
    assert {o.status for o in outcomes["local"]} == {"OK", "WARN"}  # WARN: the one non-NetCDF file

    local_keys = _store_contents(local.repository(), local.source.prefix_url)
    remote_keys = _store_contents(remote.repository(), remote.source.prefix_url)
    assert sorted(remote_keys) == sorted(local_keys)
    differing = [k for k in local_keys if local_keys[k] != remote_keys[k]]
    assert not differing, differing[:5]
    assert any("/c/" in k for k in local_keys)  # chunks were compared, not only documents


def test_a_file_rewritten_after_indexing_is_refused_by_its_pinned_generation(gcs, gcs_archive):
    """One request reads a file's head (format sniff, parse, coordinates); it names the indexed
    generation, so a file rewritten since is a failure record, not stored under the old fingerprint."""
    prefix = f"{STORE_BUCKET}/{uuid.uuid4().hex[:8]}"
    relpath = "Projection-AIS/AWI/PISM1/exp05/lithk_AIS_AWI_PISM1_exp05.nc"
    fs = gcs_filesystem(emulator_access())
    fs.put(str(gcs_archive / relpath), f"{prefix}/{relpath}")
    source = parse_location(f"gs://{prefix}", "source", emulator_access())
    rows = list_archive(source).rows.to_dict("records")

    gcs.counts(clear=True)
    result = virtualize_rows(rows, source)
    assert [f.variable for f in result.files] == ["lithk"] and not result.failures
    assert gcs.counts() == {"GET": 1}  # the head, once: no metadata look-up, no re-read

    fs.put(str(gcs_archive / "Projection-AIS/AWI/PISM1/exp05/orog_AIS_AWI_PISM1_exp05.nc"), f"{prefix}/{relpath}")
    result = virtualize_rows(rows, source)
    assert not result.files
    assert result.failures[0].error == f"source changed while virtualizing (fingerprint {rows[0]['fingerprint']} is gone)"


def test_a_process_pool_on_gs_gets_each_head_from_the_parent(gcs, gcs_archive):
    """Through an executor on gs://, the heads are fetched at once in the parent and travel with the
    rows: the workers' results match the inline ones, for the same one request a file."""
    from concurrent.futures import ProcessPoolExecutor

    source = parse_location("gs://ismip6", "source", emulator_access())
    rows = list_archive(source).for_partition("AWI/PISM1/exp05").to_dict("records")
    gcs.counts(clear=True)
    inline = virtualize_rows(rows, source)
    inline_requests = gcs.counts()
    with ProcessPoolExecutor(2) as pool:
        gcs.counts(clear=True)
        pooled = virtualize_rows(rows, source, executor=pool)
        assert gcs.counts() == inline_requests == {"GET": len(rows)}
    summary = lambda result: sorted((f.group, f.chunk_refs, sorted(f.dataset.variables)) for f in result.files)  # noqa: E731
    assert summary(pooled) == summary(inline) and not pooled.failures and len(pooled.files) == len(rows)
