"""Hostile NetCDF: each becomes a failure record within bounded memory and time; the partition goes on."""

from __future__ import annotations

import resource
import struct
import time

import dagster as dg
import netCDF4
import pytest

from ismip6_assets.paths import PartitionKey
from ismip6_assets.runner import run_partition
from ismip6_assets.sample_archive import sample_dataset, write_netcdf
from ismip6_assets.store import open_repository
from ismip6_assets.store_state import read_partition_state

KEY = "EVIL/M1/exp01"


def name(var: str) -> str:
    return f"{var}_AIS_EVIL_M1_exp01.nc"


def absurd_netcdf3(path):
    """A NetCDF3 header that declares 2**30 time steps for a file of a few kB."""
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as ds:
        for dim, n in (("time", 5), ("y", 10), ("x", 10)):
            ds.createDimension(dim, n)
        ds.createVariable("orog", "f4", ("time", "y", "x"))[:] = 1
    raw = bytearray(path.read_bytes())
    i = raw.index(b"time")
    raw[i + 4 : i + 8] = struct.pack(">i", 2**30)
    path.write_bytes(raw)


def absurd_netcdf4(path):
    """An HDF5 dataset declaring 10^16 elements (nothing written): 142 PiB if anyone believed it."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        for dim, n in (("time", 10**6), ("y", 10**5), ("x", 10**5)):
            ds.createDimension(dim, n)
        ds.createVariable("topg", "f4", ("time", "y", "x"), chunksizes=(1, 10, 10))


def huge_attribute(path):
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("x", 3)
        var = ds.createVariable("base", "f4", ("x",))
        var[:] = 1
        var.setncattr("history", "A" * (20 * 1024 * 1024))


def deep_groups(path):
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("x", 3)
        ds.createVariable("acabf", "f4", ("x",))[:] = [1, 2, 3]
        group = ds
        for i in range(200):
            group = group.createGroup(f"g{i}")


@pytest.mark.slow
def test_hostile_files_become_failure_records(archive, archive_dir):
    folder = archive_dir / "Projection-AIS/EVIL/M1/exp01"
    folder.mkdir(parents=True)
    write_netcdf(sample_dataset("lithk", "evil", n_times=2), folder / name("lithk"), "chunked")
    absurd_netcdf3(folder / name("orog"))
    absurd_netcdf4(folder / name("topg"))
    huge_attribute(folder / name("base"))
    deep_groups(folder / name("acabf"))
    (folder / name("lim")).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # wrong magic bytes

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("model_experiment", [KEY])
        outcome = run_partition(archive, instance, KEY)
    elapsed = time.monotonic() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024

    assert outcome.status == "WARN", outcome.findings  # committed what it could; failures recorded
    state = read_partition_state(open_repository(archive.store, archive.source), PartitionKey.parse(KEY))
    reasons = {f["url"].rsplit("/", 1)[-1].split("_AIS_")[0]: f["error"] for f in state.failures}
    assert set(reasons) >= {"orog", "topg", "base", "lim"}, reasons
    assert "2,112 bytes" in reasons["orog"] or "'time'" in reasons["orog"], reasons["orog"]  # says why: size or dimension
    assert "history" in reasons["base"] and "limit" in reasons["base"]
    assert "not a NetCDF file" in reasons["lim"]
    assert all("\n" not in r and len(r) < 400 for r in reasons.values())
    # Deep groups are harmless when the root holds the variable: stored, or a failure, never a crash.
    assert "lithk" in state.groups and ("acabf" in state.groups or "acabf" in reasons)
    assert elapsed < 60 and grown_mb < 500, (elapsed, grown_mb)
