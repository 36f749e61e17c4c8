"""The archive index: one row per recognised file, with a source fingerprint.

Built from a fresh listing (one recursive listing per call, never one request per file). The
fingerprint is what changes when a file's bytes change: the GCS generation, else etag/md5, else
mtime+size on local disks. Icechunk refuses to read a virtual ref whose source changed, so the
fingerprint recorded at write time is what reconciliation compares against.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from ismip6_assets.core.locations import Location
from ismip6_assets.core.paths import ARCHIVE_TOP, InvalidName, PartitionKey, parse_archive_path
from ismip6_assets.core.skip_list import SkipList, modified_of

INDEX_COLUMNS = [
    "url",
    "institution",
    "model_name",
    "experiment",
    "variable",
    "partition_key",
    "group",
    "size",
    "fingerprint",
    "skipped",
    "duplicate",  # another file of the experiment maps to the same variable group: neither is stored
    "skip_entry",  # the skip-list entry naming the file ("" when none); skipped=False beside one: the entry is stale
]


def fingerprint_of(info: dict) -> str:
    """A string that changes whenever the object's bytes change."""
    if info.get("generation"):
        return f"generation:{info['generation']}"
    for key in ("etag", "md5Hash", "ETag"):
        if info.get(key):
            return f"{key.lower()}:{str(info[key]).strip(chr(34))}"
    mtime = info.get("mtime") or info.get("updated") or info.get("LastModified")
    return f"mtime:{mtime}:size:{info.get('size')}"


@dataclass
class ArchiveListing:
    """Index rows plus the paths that were listed but do not belong in the index."""

    rows: pd.DataFrame
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)

    @property
    def partitions(self) -> list[str]:
        return sorted(self.rows["partition_key"].unique())

    def for_partition(self, key: str) -> pd.DataFrame:
        return self.rows[self.rows["partition_key"] == key].reset_index(drop=True)

    def restricted_to(self, partition: PartitionKey) -> ArchiveListing:
        """The listing of one partition's folder, as `list_archive(source, partition)` gives it."""
        folder = partition.archive_dir.rstrip("/") + "/"
        return ArchiveListing(self.for_partition(str(partition)), [(p, r) for p, r in self.ignored if p.startswith(folder)])

    def ignored_summary(self) -> dict[str, int]:
        return dict(Counter(reason.split(":")[0] for _, reason in self.ignored))


def empty_index() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "size" else "bool" if c in ("skipped", "duplicate") else "object") for c in INDEX_COLUMNS})


def list_archive(source: Location, partition: PartitionKey | None = None, skip_list: SkipList | None = None) -> ArchiveListing:
    """List the archive (or one partition's folder) now and build index rows."""
    if skip_list is None:
        skip_list = SkipList.default()
    root = source.join(partition.archive_dir if partition else ARCHIVE_TOP)
    try:
        found = source.fs.find(root.fs_path, detail=True)
    except FileNotFoundError:
        found = {}
    rows, ignored = [], []
    for fs_path, info in sorted(found.items()):
        if info.get("type") == "directory":
            continue
        relpath = source.relpath_of(fs_path)
        try:
            parsed = parse_archive_path(relpath)
        except InvalidName as exc:
            ignored.append((relpath, f"unrecognised: {exc}"))
            continue
        url = source.url_of(relpath)
        key = parsed.partition
        size, fingerprint = int(info.get("size") or 0), fingerprint_of(info)
        skip = skip_list.match(url, size, fingerprint, modified_of(info))
        rows.append(
            {
                "url": url,
                "institution": key.institution,
                "model_name": key.model,
                "experiment": key.experiment,
                "variable": parsed.variable,
                "partition_key": str(key),
                "group": parsed.group,
                "size": size,
                "fingerprint": fingerprint,
                "skipped": bool(skip and skip.skips),
                "skip_entry": skip.entry.text if skip else "",
                "duplicate": False,
            }
        )
    ignored += _mark_duplicates(rows, source)
    frame = pd.DataFrame(rows, columns=INDEX_COLUMNS) if rows else empty_index()
    for group, owners in _model_group_collisions(frame).items():
        clash = (frame["institution"] + "/" + frame["model_name"]).isin(owners)
        ignored += [(source.relpath_of(u), f"collision: {' and '.join(owners)} both map to store group {group}") for u in frame.loc[clash, "url"]]
        frame = frame[~clash]
    return ArchiveListing(rows=frame.astype({"size": "int64", "skipped": "bool", "duplicate": "bool"}), ignored=ignored)


def _mark_duplicates(rows: list[dict], source: Location) -> list[tuple[str, str]]:
    """Flag files of one experiment that map to the same variable group, and say so for each.

    Picking one would be a guess: ``lithk_AIS_AWI_PISM1_exp05 (copy).nc`` sorts before the real
    file (' ' < '.'), so "first listed wins" let a stray copy replace the real data. Both stay in the
    index, flagged; `reconcile.store_diff` writes neither and reports ERROR until one is deleted or
    skip-listed (skip-listed files take no slot).
    """
    slots: dict[str, list[dict]] = {}
    for row in rows:
        if not row["skipped"]:
            slots.setdefault(row["group"], []).append(row)
    ignored = []
    for group, clash in slots.items():
        if len(clash) > 1:
            names = " and ".join(r["url"].rsplit("/", 1)[-1] for r in clash)
            for row in clash:
                row["duplicate"] = True
                ignored.append((source.relpath_of(row["url"]), f"duplicate: {names} both map to variable group {group}; neither is stored until one is deleted or skip-listed"))
    return ignored


def _model_group_collisions(rows: pd.DataFrame) -> dict[str, list[str]]:
    """``A_B/C`` and ``A/B_C`` both become store group ``A_B_C``: such pairs must not share it."""
    pairs = rows[["institution", "model_name"]].drop_duplicates()
    joined = pairs["institution"] + "_" + pairs["model_name"]
    dupes = joined[joined.duplicated(keep=False)]
    return {g: sorted(f"{i}/{m}" for i, m in pairs.loc[dupes[dupes == g].index].values) for g in set(dupes)}


INDEX_RELPATH = "index"


def index_path(store: Location, partition: PartitionKey | None = None) -> Location:
    """``{STORE}/index/INST/MODEL/EXP.parquet``; ``pd.read_parquet(f"{STORE}/index")`` reads all."""
    base = store.join(INDEX_RELPATH)
    return base.join(f"{partition}.parquet") if partition else base


def write_index(store: Location, partition: PartitionKey, rows: pd.DataFrame) -> str:
    return write_indexes(store, {partition: rows})[partition]


def write_indexes(store: Location, rows: dict[PartitionKey, pd.DataFrame]) -> dict[PartitionKey, str]:
    """Each partition's rows as its parquet (`index_path`); on gs:// in one concurrent batch."""
    docs = {}
    for partition, frame in rows.items():
        # Rendered in memory and written in one put: through a gcsfs file object each of the parquet
        # writer's flushes is an upload of its own, a round trip each.
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        docs[f"{INDEX_RELPATH}/{partition}.parquet"] = buffer.getvalue()
    store.put_many(docs)
    return {partition: index_path(store, partition).url for partition in rows}


def read_full_index(store: Location) -> pd.DataFrame:
    base = index_path(store)
    files = [p for p in store.fs.find(base.fs_path) if p.endswith(".parquet")] if store.fs.exists(base.fs_path) else []
    frames = []
    for path in sorted(files):
        with store.fs.open(path, "rb") as f:
            frames.append(pd.read_parquet(f))
    if not frames:
        return empty_index()
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(duplicate=frame["duplicate"].eq(True)) if "duplicate" in frame else frame.assign(duplicate=False)  # older parquet lacks it
