"""What the sea-level refresh reads from the sources, counted by the storage requests the emulator's
proxy sees (tests/gcs_emulator.py): the real archive of tests/sea_level_support.py on gs://, committed
through the library pipeline, one source file re-delivered with new bytes, the store and the sea level
brought up to date."""

from __future__ import annotations

import collections
import urllib.parse
import uuid

import numpy as np
import pytest
import xarray as xr

from ismip6_assets.core.gcs import gcs_filesystem
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.sea_level_store import ensemble_group, refresh_sea_level
from ismip6_assets.core.store import open_repository
from tests.sea_level_support import write_real_numbers_archive
from tests.support.gcs_fixtures import SOURCE_BUCKET, STORE_BUCKET, emulator_access, gcs, gcs_emulator  # noqa: F401 - fixtures
from tests.test_views import commit_archive

pytestmark = pytest.mark.gcs
CHANGED = "Projection-AIS/JPL1/ISSM/exp05"
STEPS = 85  # each of the archive's exp05 fields: one stored chunk per model year


def source_gets(requests: list[tuple], prefix: str) -> collections.Counter:
    """GETs of source objects under gs://ismip6/{prefix}/, by object path below the prefix."""
    out = collections.Counter()
    for method, target, *_ in requests:
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        for marker in (f"/{SOURCE_BUCKET}/{prefix}/", f"/b/{SOURCE_BUCKET}/o/{prefix}/"):
            if method == "GET" and marker in path:
                out[path.split(marker, 1)[1]] += 1
    return out


def rewrite(path, change, to=None) -> None:
    """`path`'s dataset changed by `change`, written (one zlib chunk a step) to `to` or over `path`."""
    with xr.open_dataset(path, decode_times=False) as ds:
        changed = change(ds.load())
    (to or path).unlink(missing_ok=True)
    (name,) = changed.data_vars
    changed.to_netcdf(to or path, format="NETCDF4", encoding={name: {"zlib": True, "chunksizes": (1, *changed[name].shape[1:])}})


def test_a_re_delivered_file_reads_its_partition_once_and_nothing_else(gcs, tmp_path):
    """The over-read bench/gcs.py's refresh showed: after one rewritten file, the ensemble of the
    experiments the partition enters was rebuilt by reading every model's scalar series again from
    the sources. Only the partition's own chunks may be read, each once."""
    archive, prefix = tmp_path / "archive", f"sea-level-{uuid.uuid4().hex[:8]}"
    write_real_numbers_archive(archive)
    orog = archive / CHANGED / "orog_AIS_JPL1_ISSM_exp05.nc"  # a variable the sea level does not read
    rewrite(archive / CHANGED / "topg_AIS_JPL1_ISSM_exp05.nc", lambda ds: ds.rename(topg="orog"), orog)
    fs = gcs_filesystem(emulator_access())
    fs.put(str(archive / "Projection-AIS"), f"{SOURCE_BUCKET}/{prefix}/Projection-AIS", recursive=True)
    source = parse_location(f"gs://{SOURCE_BUCKET}/{prefix}", "source", emulator_access())
    store = parse_location(f"gs://{STORE_BUCKET}/{prefix}", "store", emulator_access())
    commit_archive(source, store)
    repo = open_repository(store, source)
    first = refresh_sea_level(repo, store)
    assert len(first.recomputed) == 6 and not first.left_out

    # topg re-delivered with new bytes (a deeper bed): JPL1 exp05's volumes change, nothing else's.
    topg = archive / CHANGED / "topg_AIS_JPL1_ISSM_exp05.nc"
    rewrite(topg, lambda ds: ds.assign(topg=ds.topg - 1.0))
    fs.put(str(topg), f"{SOURCE_BUCKET}/{prefix}/{CHANGED}/{topg.name}")
    commit_archive(source, store)
    gcs.requests(clear=True)
    after = refresh_sea_level(repo, store)
    reads = source_gets(gcs.requests(clear=True), prefix)

    assert after.recomputed == ["JPL1/ISSM/exp05"] and after.ensembles_written == ["exp05"]
    outside = {path: n for path, n in reads.items() if not path.startswith(CHANGED + "/")}
    assert not outside, f"source objects of unchanged partitions read: {outside}"
    fields = {f"{CHANGED}/{v}_AIS_JPL1_ISSM_exp05.nc" for v in ("lithk", "topg", "sftgif", "sftgrf")}
    assert fields <= set(reads), sorted(reads)
    assert all(n <= STEPS for n in reads.values()), f"a chunk read more than once: {dict(reads)}"
    jpl = after.table[(after.table.institution == "JPL1") & (after.table.experiment == "exp05")]
    before = first.table[(first.table.institution == "JPL1") & (first.table.experiment == "exp05")]
    assert (jpl["ivaf_m3"].to_numpy() != before["ivaf_m3"].to_numpy()).all()  # really recomputed from the new bed
    ncar = after.table[after.table.institution == "NCAR"]
    assert np.array_equal(ncar["ivaf_m3"].to_numpy(), first.table[first.table.institution == "NCAR"]["ivaf_m3"].to_numpy())
    # NCAR's lim, not read again, is still in the rewritten ensemble: taken from the stored one.
    session = repo.readonly_session("main")
    ensemble = xr.open_zarr(session.store, group=ensemble_group("exp05"), consolidated=False)
    with xr.open_dataset(archive / "Projection-AIS/NCAR/CISM/exp05/lim_AIS_NCAR_CISM_exp05.nc") as lim:
        np.testing.assert_array_equal(ensemble.lim.sel(model="NCAR_CISM").dropna("time").values, lim.lim.values)
    assert ensemble.lim.attrs["units"] == "kg"

    # A variable the sea level does not read, re-delivered: nothing to recompute, no source read.
    rewrite(orog, lambda ds: ds.assign(orog=ds.orog + 1.0))
    fs.put(str(orog), f"{SOURCE_BUCKET}/{prefix}/{CHANGED}/{orog.name}")
    commit_archive(source, store)
    gcs.requests(clear=True)
    last = refresh_sea_level(repo, store)
    assert source_gets(gcs.requests(clear=True), prefix) == {}
    assert last.recomputed == [] and last.ensembles_written == [] and not last.current


def test_partitions_read_side_by_side_on_gs_give_what_each_gives_alone_and_never_pickle_the_store(gcs, tmp_path, monkeypatch):
    """`ice_volume` reads a run's partitions side by side on gs://. Dask naming a field's blocks by
    tokenizing its data pickled the Icechunk store (`IcechunkStore.__getstate__`, a blocking call
    that keeps the GIL), and threads hung on it: no read may pickle the store, and each partition's
    volumes and scalars are what it gives read alone."""
    import icechunk.store

    from ismip6_assets.core.partition_volumes import partition_volume, refresh_partition_volumes
    from ismip6_assets.core.paths import PartitionKey
    from ismip6_assets.core.store_state import read_partition_state

    archive, prefix = tmp_path / "archive", f"side-by-side-{uuid.uuid4().hex[:8]}"
    write_real_numbers_archive(archive)
    gcs_filesystem(emulator_access()).put(str(archive / "Projection-AIS"), f"{SOURCE_BUCKET}/{prefix}/Projection-AIS", recursive=True)
    source = parse_location(f"gs://{SOURCE_BUCKET}/{prefix}", "source", emulator_access())
    store = parse_location(f"gs://{STORE_BUCKET}/{prefix}", "store", emulator_access())
    commit_archive(source, store)
    repo = open_repository(store, source)
    keys = [PartitionKey(*p.relative_to(archive / "Projection-AIS").parts) for p in sorted((archive / "Projection-AIS").glob("*/*/*"))]
    assert len(keys) == 6

    pickled = []
    getstate = icechunk.store.IcechunkStore.__getstate__
    monkeypatch.setattr(icechunk.store.IcechunkStore, "__getstate__", lambda self: (pickled.append(1), getstate(self))[1])
    gcs.requests(clear=True)
    together = refresh_partition_volumes(repo, store, keys, at_once=8)
    assert not pickled
    # The views' series and coordinates are small chunks kept in their manifests
    # (store.INLINE_CHUNK_BYTES): no chunk object is fetched after its manifest.
    chunk_objects = [t for m, t, *_ in gcs.requests(clear=True) if m == "GET" and "/chunks/" in urllib.parse.unquote(t)]
    assert not chunk_objects, chunk_objects[:5]
    session = repo.readonly_session("main")
    for key in keys:
        alone = partition_volume(session, key, read_partition_state(repo, key))
        assert together[key].recomputed and (together[key].ivaf is None) == (alone.ivaf is None), key
        if alone.ivaf is not None:
            assert together[key].ivaf.equals(alone.ivaf), key
        assert sorted(together[key].scalars) == sorted(alone.scalars), key
