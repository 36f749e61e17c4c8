import pandas as pd

from ismip6_assets.core.index import INDEX_COLUMNS, list_archive, read_full_index, write_index
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.sample_archive import SAMPLE_EXPERIMENTS


def test_listing_indexes_every_sample_file_and_counts_ignored(archive_dir):
    (archive_dir / "Projection-AIS/AWI/PISM1/exp05/notes.txt").write_text("not data")
    deep = archive_dir / "Projection-AIS/AWI/PISM1/exp05/old"
    deep.mkdir()
    (deep / "lithk_AIS_AWI_PISM1_exp05.nc").write_bytes(b"x")
    (archive_dir / "Projection-GIS").mkdir()
    (archive_dir / "Projection-GIS/lithk_GIS.nc").write_bytes(b"x")

    listing = list_archive(parse_location(str(archive_dir), "source"))

    expected = sum(len(e.variables) for e in SAMPLE_EXPERIMENTS) + 1  # + the 0-byte skipped file
    assert len(listing.rows) == expected
    assert list(listing.rows.columns) == INDEX_COLUMNS
    assert len(listing.ignored) == 2  # notes.txt and the too-deep file; Projection-GIS is not listed
    assert listing.rows["skipped"].sum() == 1
    assert listing.rows["url"].str.startswith("file://").all()
    assert listing.rows["fingerprint"].str.startswith("mtime:").all()
    ucijpl = listing.rows[listing.rows["institution"] == "UCIJPL"]
    assert set(ucijpl["variable"]) == {"lithk", "acabf", "base", "lim"}


def test_fingerprint_changes_when_a_file_is_rewritten(archive_dir):
    source = parse_location(str(archive_dir), "source")
    key = PartitionKey("AWI", "PISM1", "exp05")
    before = list_archive(source, key).rows.set_index("variable")["fingerprint"]
    path = archive_dir / "Projection-AIS/AWI/PISM1/exp05/lim_AIS_AWI_PISM1_exp05.nc"
    path.write_bytes(path.read_bytes() + b"\0")
    after = list_archive(source, key).rows.set_index("variable")["fingerprint"]
    assert before["lim"] != after["lim"]
    assert before["lithk"] == after["lithk"]


def test_index_parquet_is_readable_with_plain_pandas(archive_dir, store_dir):
    source, store = parse_location(str(archive_dir), "s"), parse_location(str(store_dir), "t")
    listing = list_archive(source)
    for key in listing.partitions:
        write_index(store, PartitionKey.parse(key), listing.for_partition(key))
    frame = pd.read_parquet(store_dir / "index")  # what anyone with pandas would do
    assert len(frame) == len(listing.rows)
    assert set(frame["url"]) == set(listing.rows["url"])
    assert len(read_full_index(store)) == len(listing.rows)


def test_group_collisions_between_models_are_ignored_not_merged(archive_dir):
    # "A_B/C" and "A/B_C" would both write store group "A_B_C".
    for inst, model in (("X_Y", "M"), ("X", "Y_M")):
        folder = archive_dir / "Projection-AIS" / inst / model / "exp01"
        folder.mkdir(parents=True)
        (folder / f"lithk_AIS_{inst}_{model}_exp01.nc").write_bytes(b"CDF\x01")
    listing = list_archive(parse_location(str(archive_dir), "source"))
    assert not listing.rows["url"].str.contains("/exp01/").any()
    assert sum("collision" in reason for _, reason in listing.ignored) == 2


def test_two_files_for_one_group_are_both_flagged_and_ignored_with_the_reason_unless_one_is_skip_listed(archive_dir):
    from ismip6_assets.core.skip_list import SkipList

    folder = archive_dir / "Projection-AIS/AWI/PISM1/exp05"
    copy = folder / "lithk_AIS_AWI_PISM1_exp05 (copy).nc"
    copy.write_bytes((folder / "lithk_AIS_AWI_PISM1_exp05.nc").read_bytes())
    source, key = parse_location(str(archive_dir), "source"), PartitionKey("AWI", "PISM1", "exp05")

    listing = list_archive(source, key)
    flagged = listing.rows[listing.rows["duplicate"]]
    assert sorted(flagged["url"].str.rsplit("/", n=1).str[-1]) == [copy.name, "lithk_AIS_AWI_PISM1_exp05.nc"]
    assert [p for p, r in listing.ignored if r.startswith("duplicate:")] == sorted(source.relpath_of(u) for u in flagged["url"])
    assert listing.rows["duplicate"].sum() == 2

    skipping = list_archive(source, key, skip_list=SkipList.from_text("(copy) before=2100-01-01"))
    assert not skipping.rows["duplicate"].any() and not skipping.ignored
