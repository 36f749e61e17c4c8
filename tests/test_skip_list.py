"""Skip-list entries are pinned to the bytes they were written for; a re-delivered file is stored and
its entry reported stale."""

from __future__ import annotations

import os

import pytest

from ismip6_assets.core.locations import ConfigError
from ismip6_assets.cli.runs import run_partition
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.core.sample_archive import sample_dataset, write_netcdf
from ismip6_assets.core.skip_list import DEFAULT_SKIP_LIST, SkipList
from ismip6_assets.core.store_state import read_partition_state
from ismip6_assets.core.paths import PartitionKey
from tests.conftest import N_TIMES

KEY = "ULB/fETISh_16km/expA6"  # holds the sample archive's 0-byte xvelbase file, skip-listed with size=0
EMPTY = "ULB/fETISh_16km/expA6/xvelbase_AIS_ULB_fETISh_expA6.nc"


def test_the_packaged_list_parses_and_every_entry_has_a_pin():
    entries = SkipList.default().entries
    assert entries and all(e.kind in ("size", "fingerprint", "before") for e in entries)
    assert SkipList.from_text(DEFAULT_SKIP_LIST.read_text()).entries == entries


@pytest.mark.parametrize(
    ("line", "says"),
    [("NCAR/CISM/expD12/", "give PATTERN and one pin"), ("a.nc colour=red", "unknown pin"), ("a.nc size=zero", "not a byte count"),
     ("a/ before=2020-13-01", "not a date")],
)
def test_a_malformed_entry_is_refused_naming_file_and_line(tmp_path, line, says):
    path = tmp_path / "skip.txt"
    path.write_text(f"# comment\n{line}  # why\n")
    with pytest.raises(ConfigError, match=rf"{path} line 2: .*{says}"):
        SkipList.from_file(path)


def test_pins_hold_only_for_the_bytes_they_name():
    skip = SkipList.from_text("a.nc size=0\nb.nc fingerprint=generation:7\nold/ before=2022-01-01")
    import datetime as dt

    early, late = dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert skip.match("x/a.nc", 0, "f", late).skips and not skip.match("x/a.nc", 10, "f", late).skips
    assert skip.match("x/b.nc", 9, "generation:7", late).skips and not skip.match("x/b.nc", 9, "generation:8", late).skips
    assert skip.match("old/c.nc", 9, "f", early).skips and not skip.match("old/c.nc", 9, "f", late).skips
    assert skip.match("new/c.nc", 9, "f", early) is None


@pytest.mark.slow
def test_a_redelivered_file_is_stored_and_its_entry_reported_stale(archive, archive_dir, store_dir, instance, monkeypatch, tmp_path):
    instance.add_dynamic_partitions("model_experiment", [KEY])
    first = run_partition(archive, instance, KEY)
    assert first.status == "OK" and {"category": "skipped", "item": "1"} in first.findings

    # The 0-byte file is re-delivered as a good one at the same path.
    path = archive_dir / "Projection-AIS" / EMPTY
    write_netcdf(sample_dataset("xvelbase", "redelivered", N_TIMES), path, "chunked")
    second = run_partition(archive, instance, KEY)
    assert second.status == "WARN", second.findings
    assert {"category": "stale_skip_entries", "item": "1"} in second.findings
    details = next(f["item"] for f in second.findings if f["category"] == "details")
    assert f"skip-list entry '{EMPTY} size=0' no longer matches the file" in details
    stored = read_partition_state(archive.repository(), PartitionKey.parse(KEY))
    assert "xvelbase" in stored.groups  # not kept out of the store

    # Once the entry is removed, the check is OK again.
    custom = tmp_path / "skip.txt"
    custom.write_text("NCAR/CISM/expD12/ before=2022-01-01\n")
    with_custom = ArchiveResource(source_url=archive.source_url, store_url=archive.store_url, skip_list=str(custom))  # ISMIP6_SKIP_LIST
    assert run_partition(with_custom, instance, KEY).status == "OK"


def test_a_folder_entry_skips_what_was_delivered_before_its_date(archive_dir, tmp_path, monkeypatch):
    from ismip6_assets.core.index import list_archive
    from ismip6_assets.core.locations import parse_location

    folder = archive_dir / "Projection-AIS" / "AWI" / "PISM1" / "exp05"
    old = next(folder.glob("lithk_*.nc"))
    os.utime(old, (1.6e9, 1.6e9))  # 2020-09
    custom = tmp_path / "skip.txt"
    custom.write_text("AWI/PISM1/exp05/ before=2022-01-01\n")
    rows = list_archive(parse_location(str(archive_dir), "source"), PartitionKey.parse("AWI/PISM1/exp05"), SkipList.default(custom)).rows
    skipped = dict(zip(rows["variable"], rows["skipped"]))
    assert skipped.pop("lithk") is True and not any(skipped.values())  # the others were written today
    assert set(rows["skip_entry"]) == {"AWI/PISM1/exp05/ before=2022-01-01"}
