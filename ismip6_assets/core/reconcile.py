"""What does the store lack for a partition? One answer for the check, the commit and the sensor.

`store_diff` is pure: index rows (from a fresh listing) and the stored state in, a `StoreDiff` out.
`partition_diff` does the I/O around it. Categories:

- missing: in the index, not in the store, no failure recorded for its current fingerprint
- extra: in the store, not in the index (the source file was deleted)
- stale: in both, but the store was built from other bytes (fingerprint differs)
- failed: a failure is recorded for the file's current fingerprint
- skipped: on the skip list
- duplicate: two or more files map to one variable group; neither is written and what is stored
  stays as it is, ERROR until a human deletes or skip-lists one (a run cannot fix it)
- stale_skip_entry: a skip-list entry names the file but was written for other bytes (re-delivered):
  the file is treated like any other, and the entry is reported so someone removes it (WARN)
- partition_gone: the store holds the partition, its archive folder is gone (its groups go next run)
- no_files: nothing listed and nothing stored; the check fails because it compared nothing
- view (``missing`` / ``stale``): the partition's view (views.py) is absent, or was built from other
  groups than the store holds (or the partition holds none); the next commit rebuilds it

ERROR when the store is *behind* (missing, extra, stale, partition_gone, view), on duplicates, or
when nothing was compared; WARN when only failures (or stale skip-list entries) remain: a run cannot
fix those until the file's fingerprint changes (or the entry goes).

`refresh_requests` turns the same answer, for every partition at once, into the runs a sensor asks
for: only partitions the store is behind on, each under a run key that names the archive and store
state it was asked for, so the same state never asks twice and a changed state always asks again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import Location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.store import open_repository
from ismip6_assets.core.store_state import PartitionState, read_partition_state
from ismip6_assets.core.views import view_group

ERROR_CATEGORIES = ("missing", "extra", "stale")
VIEW_REASONS = {
    "missing": "the partition's view is not in the store; the next run writes it",
    "stale": "the view was built from other groups than the store holds; the next run rebuilds it",
}


@dataclass
class StoreDiff:
    partition: str
    missing: list[str] = field(default_factory=list)  # urls
    stale: list[str] = field(default_factory=list)  # urls
    extra: list[str] = field(default_factory=list)  # variables in the store without a source file
    failed: list[dict] = field(default_factory=list)  # failure records still current
    skipped: list[str] = field(default_factory=list)  # urls
    duplicate: list[str] = field(default_factory=list)  # urls of files that share a variable group
    stale_skip_entries: dict[str, str] = field(default_factory=dict)  # url -> the entry that no longer matches it
    ok: list[str] = field(default_factory=list)  # urls
    indexed: int = 0
    partition_gone: bool = False  # the store holds the partition but the archive folder is gone
    view: str = ""  # "missing" | "stale" | "" (current, or none needed)
    groups: dict[str, str] = field(default_factory=dict)  # url or variable -> store group, for reports

    @property
    def behind(self) -> bool:
        """A run would change the store: something to write, replace or remove, or the view to rebuild."""
        return self.partition_gone or bool(self.view) or any(getattr(self, c) for c in ERROR_CATEGORIES)

    @property
    def status(self) -> str:
        """``ERROR``: the store is behind the archive, files clash on a group, or nothing was
        compared; ``WARN``: only recorded failures; ``OK``."""
        if self.behind or self.duplicate or self.indexed == 0:
            return "ERROR"
        return "WARN" if self.failed or self.stale_skip_entries else "OK"

    @property
    def to_write(self) -> list[str]:
        return self.missing + self.stale

    def counts(self) -> dict[str, int]:
        return {c: len(getattr(self, c)) for c in ("missing", "extra", "stale", "failed", "skipped", "duplicate", "stale_skip_entries", "ok")} | {
            "indexed": self.indexed,
            "view_behind": int(bool(self.view)),
        }

    def rows(self) -> list[dict]:
        """One row per offending file or group, naming the store group, for tables people read."""
        out = [{"category": c, "item": u, "group": self.groups.get(u, "")} for c in ("missing", "stale", "extra") for u in getattr(self, c)]
        out += [{"category": "failed", "item": f["url"], "group": self.groups.get(f["url"], ""), "reason": f.get("error", "")} for f in self.failed]
        out += [
            {"category": "duplicate", "item": u, "group": self.groups.get(u, ""), "reason": "another file maps to this group; delete or skip-list one"}
            for u in self.duplicate
        ]
        out += [{"category": "skipped", "item": u, "group": self.groups.get(u, "")} for u in self.skipped]
        out += [
            {"category": "stale_skip_entry", "item": u, "group": self.groups.get(u, ""),
             "reason": f"skip-list entry '{entry}' no longer matches the file: it is stored now; remove the entry"}
            for u, entry in self.stale_skip_entries.items()
        ]
        if self.view:
            view = view_group(PartitionKey.parse(self.partition))
            out.append({"category": f"view_{self.view}", "item": view, "group": view, "reason": VIEW_REASONS[self.view]})
        if self.partition_gone:
            out.insert(0, {"category": "partition_gone", "item": self.partition, "reason": "archive folder gone; the next run removes its groups"})
        elif self.indexed == 0:
            # A partition with no files compared nothing: after its folder was deleted and its
            # groups removed, it must still not read as green.
            out.insert(0, {"category": "no_files", "item": self.partition, "reason": "no files in the archive folder; nothing compared"})
        return out


def store_diff(partition: PartitionKey, rows: pd.DataFrame, state: PartitionState) -> StoreDiff:
    diff = StoreDiff(partition=str(partition), indexed=len(rows))
    if rows.empty and state.exists:
        diff.partition_gone = True
    failed = {(f["url"], f.get("fingerprint")): f for f in state.failures}
    indexed_variables = set()
    # Rows built by hand (or older parquet) may lack the column: only True flags a duplicate.
    duplicates = rows["duplicate"].eq(True) if "duplicate" in rows else [False] * len(rows)
    live = set(rows["variable"][~rows["skipped"].astype(bool)])
    # zip over columns, not itertuples (a namedtuple a row): this runs for every partition of the archive.
    # Rows built by hand (or older parquet) may lack the column or hold NaN there: only text names an entry.
    entries = rows["skip_entry"].where(rows["skip_entry"].map(lambda e: isinstance(e, str)), "") if "skip_entry" in rows else [""] * len(rows)
    for url, variable, group, fingerprint, skipped, duplicate, entry in zip(
        rows["url"], rows["variable"], rows["group"], rows["fingerprint"], rows["skipped"], duplicates, entries
    ):
        indexed_variables.add(variable)
        diff.groups[url] = group
        if entry and not skipped:
            diff.stale_skip_entries[url] = entry
        stored = state.groups.get(variable)
        if skipped:
            diff.skipped.append(url)
            if stored is not None and variable not in live:  # a skip-listed copy beside the real file removes nothing
                diff.extra.append(variable)
        elif duplicate:
            diff.duplicate.append(url)  # neither written nor removed: the stored group stays as it is
        elif stored is not None and stored.url == url and stored.fingerprint == fingerprint:
            diff.ok.append(url)
        elif stored is not None:
            diff.stale.append(url)
        elif (url, fingerprint) in failed:
            diff.failed.append(failed[(url, fingerprint)])
        else:
            diff.missing.append(url)
    diff.extra += sorted(v for v in state.groups if v not in indexed_variables)
    diff.groups |= {v: state.groups[v].group if v in state.groups else partition.variable_group(v) for v in diff.extra}
    if not diff.partition_gone:
        diff.view = view_status(state)
    return diff


def view_status(state: PartitionState) -> str:
    """``missing``/``stale`` when the view does not hold exactly the stored groups; ``""`` otherwise.

    A partition with groups needs a view; one without (every file failed) needs none."""
    built_from = {v: g.fingerprint for v, g in state.groups.items()}
    if state.view_sources is None:
        return "missing" if built_from else ""
    return "" if built_from and state.view_sources == built_from else "stale"


def partition_diff(source: Location, store: Location, partition: PartitionKey, repo=None) -> tuple[pd.DataFrame, StoreDiff]:
    """Compare the store with a fresh listing of the partition's archive folder."""
    rows = list_archive(source, partition).rows
    repo = repo or open_repository(store, source)
    return rows, store_diff(partition, rows, read_partition_state(repo, partition))


def markdown_table(rows: list[dict], limit: int = 50) -> str:
    if not rows:
        return "_nothing to report_"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows[:limit]:
        lines.append("| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more")
    return "\n".join(lines)


@dataclass
class CommitPlan:
    """What one commit must do to make a partition's store groups match its index."""

    write: list  # VirtualizedFile
    remove: list[str]  # variables
    failures: list  # FailureRecord | dict, all current failures of the partition
    remove_partition: bool = False
    rebuild_view: bool = False  # the stored view is missing or stale (a commit that changes a group rebuilds it anyway)


def rows_to_virtualize(rows: pd.DataFrame, diff: StoreDiff) -> pd.DataFrame:
    return rows[rows["url"].isin(diff.to_write)]


def commit_plan(diff: StoreDiff, files: list, new_failures: list) -> CommitPlan:
    """Only missing/stale files are written; extra groups go; failures still current are kept.

    A stale file that now fails loses its group: the group's refs point at bytes that are gone, so
    keeping it would serve wrong values; the failure record says why it is absent. A partition with
    no files (its folder deleted) has no place in the store, even as an empty experiment group.
    `files` and `new_failures` count only for files `diff` says to write: another writer may have
    stored (or recorded) the rest since they were virtualized, and its records stay as they are.
    """
    from ismip6_assets.core.virtualize import FailureRecord

    if diff.partition_gone or diff.indexed == 0:
        return CommitPlan(write=[], remove=[], failures=[], remove_partition=True)
    wanted = set(diff.to_write)
    new_failures = [f for f in new_failures if f.url in wanted]
    retried = {f.url for f in new_failures}
    kept = [FailureRecord(**f) for f in diff.failed if f["url"] not in retried]
    stale = set(diff.stale)
    broken = [f.variable for f in new_failures if f.url in stale and f.variable]
    return CommitPlan(
        write=[f for f in files if f.url in wanted],
        remove=diff.extra + broken,
        failures=kept + list(new_failures),
        rebuild_view=bool(diff.view),
    )


def replan(partition: PartitionKey, rows: pd.DataFrame, files: list, new_failures: list):
    """`store.commit_partition`'s `replan`: the partition's `CommitPlan` from its state in the
    session a commit is built in, or None when the store there is not behind on it (another writer
    did the work since the caller planned: no second commit).

    `files` and `new_failures` are what this run virtualized for its first plan; only those the
    session's head still lacks are written, so the other writer's groups are neither redone nor undone.
    """

    def again(session) -> CommitPlan | None:
        diff = store_diff(partition, rows, read_partition_state(None, partition, session=session))
        return commit_plan(diff, files, new_failures) if diff.behind else None

    return again


def partition_diffs(rows: pd.DataFrame, states: dict[str, PartitionState]) -> dict[str, tuple[pd.DataFrame, PartitionState, StoreDiff]]:
    """Every partition's rows, stored state and `StoreDiff`, from one listing of the whole archive
    and one read of the whole store: partitions in the archive now, plus partitions the store holds
    whose folder is gone. In partition order."""
    by_partition = {k: g for k, g in rows.groupby("partition_key")} if len(rows) else {}
    out = {}
    for key in sorted(set(by_partition) | set(states)):
        part_rows = by_partition.get(key, rows.iloc[0:0])
        state = states.get(key, PartitionState())
        out[key] = (part_rows, state, store_diff(PartitionKey.parse(key), part_rows, state))
    return out


def _digest(lines) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:12]


def archive_digest(rows: pd.DataFrame) -> str:
    """Changes iff a file of the partition is added, changed or deleted."""
    return _digest(rows["url"] + " " + rows["fingerprint"]) if len(rows) else "gone"


def store_digest(state: PartitionState) -> str:
    """Changes iff a commit touched the partition's groups, view or failure records."""
    if not state.exists:
        return "absent"
    groups = [f"{g.variable} {g.url} {g.fingerprint}" for g in state.groups.values()]
    view = [f"view {v} {fp}" for v, fp in (state.view_sources or {}).items()] if state.view_sources is not None else ["no view"]
    return _digest(groups + view + [f"failed {f['url']} {f.get('fingerprint')}" for f in state.failures])


@dataclass
class RefreshRequest:
    partition: str
    run_key: str
    diff: StoreDiff


def refresh_requests(
    rows: pd.DataFrame,
    states: dict[str, PartitionState],
    cursor: dict[str, str],
    run_finished: Callable[[str], bool] = lambda run_key: False,
    max_runs: int = 25,
    max_attempts: int = 3,
) -> tuple[list[RefreshRequest], dict[str, str]]:
    """The runs to ask for now, and the cursor after asking.

    `rows` is one listing of the whole archive, `states` what the store holds per partition, and
    `cursor` the run key last requested per partition. A partition is requested when the store is
    behind on it and its current run key was not requested before. A run that fixed something
    changed the store, and so the key; one that failed, or succeeded yet left the store behind as it
    was (its check said ERROR), did not: once `run_finished(key)`, the partition is asked again
    under ``key#attempt``, up to `max_attempts` in all; after that the check's ERROR waits for a
    human. At
    most `max_runs` a call, in partition order, so a first start on the full archive fills the queue in
    bounded batches; the rest stay behind and are asked for on the next calls.
    """
    requests, cursor = [], dict(cursor)
    for key, (part_rows, state, diff) in partition_diffs(rows, states).items():
        if not diff.behind:
            continue
        run_key = f"{key}:{archive_digest(part_rows)}:{store_digest(state)}"
        last = cursor.get(key, "")
        if last.split("#")[0] == run_key:
            attempt = int(last.partition("#")[2] or 1)
            if attempt >= max_attempts or not run_finished(last):
                continue  # asked for this exact state already; its run is queued, running or done
            run_key = f"{run_key}#{attempt + 1}"
        if len(requests) < max_runs:
            requests.append(RefreshRequest(partition=key, run_key=run_key, diff=diff))
            cursor[key] = run_key
    return requests, cursor
