"""Every GCS client of the project against the emulator: the switch, preconditions, listing, faults."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import dagster as dg
import icechunk
import obstore
import pytest
import zarr
from dagster_gcp import GCSResource
from obstore.exceptions import AlreadyExistsError, PreconditionError

from ismip6_assets.core.failures import write_failures
from ismip6_assets.core.gcs import gcs_filesystem, icechunk_gcs_storage, obstore_gcs_store
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.defs.sensors import archive_sensor, requested_partitions
from ismip6_assets.core.virtualize import FailureRecord
from tests.support.gcs_fixtures import emulator_access, emulator_host, STORE_BUCKET, gcs, gcs_archive, gcs_emulator  # noqa: F401 - fixtures

pytestmark = pytest.mark.gcs


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_xml_put_keeps_generation_preconditions(gcs):
    """object_store's create-only and compare-and-swap PUTs must fail when the object moved on;
    a proxy that dropped ``x-goog-if-generation-match`` would let all three writes through."""
    store = obstore_gcs_store(emulator_access(), STORE_BUCKET, unique("preconditions"))
    first = obstore.put(store, "ref.json", b"1", mode="create")
    with pytest.raises(AlreadyExistsError):
        obstore.put(store, "ref.json", b"2", mode="create")
    second = obstore.put(store, "ref.json", b"3", mode={"e_tag": first["e_tag"], "version": first["version"]})
    with pytest.raises(PreconditionError):
        obstore.put(store, "ref.json", b"4", mode={"e_tag": first["e_tag"], "version": first["version"]})
    assert second["version"] != first["version"]
    assert bytes(obstore.get(store, "ref.json").bytes()) == b"3"


def test_storage_emulator_host_switches_every_client(gcs):
    """What one client writes, the others read: all four reach the emulator with no credentials."""
    prefix = unique("switch")
    gcs_filesystem(emulator_access()).pipe_file(f"{STORE_BUCKET}/{prefix}/by-gcsfs.txt", b"gcsfs")
    client = GCSResource(project="ismip6-test").get_client()  # dagster-gcp -> google-cloud-storage
    assert client.bucket(STORE_BUCKET).blob(f"{prefix}/by-gcsfs.txt").download_as_bytes() == b"gcsfs"
    client.bucket(STORE_BUCKET).blob(f"{prefix}/by-google-cloud-storage.txt").upload_from_string(b"gcs")
    assert bytes(obstore.get(obstore_gcs_store(emulator_access(), STORE_BUCKET, prefix), "by-google-cloud-storage.txt").bytes()) == b"gcs"

    repo = icechunk.Repository.create(icechunk_gcs_storage(emulator_access(), STORE_BUCKET, f"{prefix}/repo"))
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_array("a", shape=(2,), dtype="i4")[:] = [7, 8]
    session.commit("one array")
    assert gcs_filesystem(emulator_access()).exists(f"{STORE_BUCKET}/{prefix}/repo/repo")  # Icechunk's own objects, seen by gcsfs
    reopened = icechunk.Repository.open(icechunk_gcs_storage(emulator_access(), STORE_BUCKET, f"{prefix}/repo"))
    assert zarr.open_group(reopened.readonly_session("main").store, mode="r")["a"][:].tolist() == [7, 8]


def test_index_lists_generation_etag_size_updated(gcs, gcs_archive):
    source = parse_location("gs://ismip6", "source", emulator_access())
    rows = list_archive(source).rows
    local = sorted(p.relative_to(gcs_archive).as_posix() for p in gcs_archive.rglob("*.nc"))
    assert sorted(source.relpath_of(u) for u in rows["url"]) == local
    assert rows["url"].str.startswith("gs://ismip6/Projection-AIS/").all()
    info = source.fs.info(f"ismip6/{local[0]}")
    assert {"generation", "etag", "size", "updated"} <= set(info)
    blobs = {b.name: b for b in GCSResource().get_client().list_blobs("ismip6", prefix="Projection-AIS/")}
    for row in rows.itertuples():
        blob = blobs[source.relpath_of(row.url)]
        assert row.fingerprint == f"generation:{blob.generation}"  # generation preferred over etag/mtime
        assert row.size == blob.size


def test_failure_log_never_overwrites_on_gcs(gcs):
    """Two partitions committing in the same second get two logs: exclusive create must hold on
    gs:// (gcsfs's open('xb') does not enforce it against the emulator; measured)."""
    store = parse_location(f"gs://{STORE_BUCKET}/{unique('failures')}", "store", emulator_access())
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    records = [FailureRecord(url=f"gs://ismip6/Projection-AIS/A/B/C/{v}_AIS_A_B_C.nc", error="boom", institution="A", model_name="B", experiment="C", variable=v) for v in ("lithk", "orog")]  # fmt: skip
    first = write_failures(store, records[:1], now=now)
    second = write_failures(store, records[1:], now=now)
    assert first.endswith("virtualization_failures_20260102_030405.json")
    assert second.endswith("virtualization_failures_20260102_030405_2.json")
    assert json.loads(store.fs.cat(first.removeprefix("gs://")))[0]["variable"] == "lithk"
    assert json.loads(store.fs.cat(second.removeprefix("gs://")))[0]["variable"] == "orog"


def test_transient_storage_errors_are_retried(gcs):
    """503, 429 and dropped connections on a few requests: Icechunk, obstore and gcsfs retry with
    backoff and the operations succeed; every injected fault was actually served."""
    prefix = unique("transient")
    gcs.inject(2, 503, method="PUT", path=f"{prefix}/repo/")
    gcs.inject(1, 429, method="PUT", path=f"{prefix}/repo/")
    gcs.inject(1, 0, method="PUT", path=f"{prefix}/repo/")
    repo = icechunk.Repository.create(icechunk_gcs_storage(emulator_access(), STORE_BUCKET, f"{prefix}/repo"))
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_array("a", shape=(3,), dtype="i4")[:] = [1, 2, 3]
    session.commit("written through faults")
    gcs.inject(2, 503, method="GET", path=f"{prefix}/repo/")
    gcs.inject(1, 0, method="GET", path=f"{prefix}/repo/")
    reopened = icechunk.Repository.open(icechunk_gcs_storage(emulator_access(), STORE_BUCKET, f"{prefix}/repo"))
    assert zarr.open_group(reopened.readonly_session("main").store, mode="r")["a"][:].tolist() == [1, 2, 3]

    gcs_filesystem(emulator_access()).pipe_file(f"{STORE_BUCKET}/{prefix}/small.txt", b"ok")
    gcs.inject(1, 503, method="GET", path=f"{prefix}/small.txt")
    assert gcs_filesystem(emulator_access()).cat(f"{STORE_BUCKET}/{prefix}/small.txt") == b"ok"
    gcs.inject(1, 0, method="GET", path=f"{prefix}/small.txt")
    assert bytes(obstore.get(obstore_gcs_store(emulator_access(), STORE_BUCKET, prefix), "small.txt").bytes()) == b"ok"
    assert all(f["count"] == 0 and f["hits"] for f in gcs.faults()), gcs.faults()


def test_permanent_storage_error_names_the_object(gcs):
    """A 403 that does not go away fails the write, and the message says which object."""
    prefix = unique("permanent")
    repo = icechunk.Repository.create(icechunk_gcs_storage(emulator_access(), STORE_BUCKET, f"{prefix}/repo"))
    gcs.inject(1000, 403, method="PUT", path=f"{prefix}/repo/")
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").create_array("a", shape=(3,), dtype="i4")[:] = [1, 2, 3]
    with pytest.raises(icechunk.IcechunkError) as raised:
        session.commit("refused")
    assert f"{prefix}/repo/" in raised.value.args[0].replace("%2F", "/").replace("%2D", "-")
    assert "403" in str(raised.value)


def test_listing_sees_a_rewrite_at_once(gcs):
    """The sensor lists every tick and virtualization re-reads the fingerprint: both must see an
    object rewritten by someone else, not a generation cached from the previous listing."""
    location = parse_location(f"gs://{STORE_BUCKET}/{unique('fresh')}", "source", emulator_access())
    blob = GCSResource().get_client().bucket(STORE_BUCKET).blob(f"{location.path}/a.nc")
    blob.upload_from_string(b"one")
    before = location.fs.find(location.fs_path, detail=True)[f"{location.fs_path}/a.nc"]["generation"]
    blob.upload_from_string(b"two")
    blob.reload()
    assert location.fs.info(f"{location.fs_path}/a.nc")["generation"] == str(blob.generation) != before
    assert location.fs.find(location.fs_path, detail=True)[f"{location.fs_path}/a.nc"]["generation"] == str(blob.generation)


def test_sensor_requests_every_partition_of_a_gs_source(gcs, gcs_archive):
    """The sensor, with the archive's dagster-gcp GCSResource set as in a deployment, lists
    gs://ismip6 and asks for one run per partition of a new gs:// store."""
    archive = ArchiveResource(source_url="gs://ismip6", store_url=f"gs://{STORE_BUCKET}/{unique('sensor')}", storage_emulator_host=emulator_host(), gcs=GCSResource(project="ismip6-test"))
    with dg.instance_for_test() as instance, dg.build_sensor_context(instance=instance, resources={"archive": archive}) as context:
        result = archive_sensor(context)
    expected = sorted({"/".join(p.relative_to(gcs_archive / "Projection-AIS").parts[:3]) for p in gcs_archive.rglob("*.nc")})
    assert requested_partitions(result) == expected


def test_proxy_delays_every_request_and_counts_them_by_method(gcs):
    """The bench's latency model (bench/gcs.py): a fixed delay per storage request and a count of
    requests by method."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    store = obstore_gcs_store(emulator_access(), STORE_BUCKET)
    path = unique("delay/object")
    obstore.put(store, path, b"0123456789")
    gcs.counts(clear=True)
    gcs.set_delay(200)
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda _: bytes(obstore.get_range(store, path, start=0, length=4)), range(4))) == [b"0123"] * 4
        obstore.head(store, path)
        elapsed = time.perf_counter() - start
    finally:
        gcs.set_delay(0)
    assert elapsed >= 0.4, elapsed  # at least two round trips: the GETs (concurrent), then the HEAD
    assert gcs.counts() == {"GET": 4, "HEAD": 1}
