from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from ismip6_assets.defs.assets.metadata import failure_table, group_list, open_code, preview_markdown, snippet, view_metadata
from ismip6_assets.core.failures import write_failures
from ismip6_assets.defs.partitions import PARTITION_BACKFILL_POLICY, model_experiment_partitions_def
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.preview import partition_preview, stored_variables
from ismip6_assets.core.executors import alongside, partitions_at_once
from ismip6_assets.core.reconcile import CommitPlan, replan
from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.core.commits_in_turn import commits_in_turn
from ismip6_assets.core.store import BRANCH
from ismip6_assets.core.view_writer import read_view
from ismip6_assets.core.virtualize import VirtualizationResult, one_line

WRITER_POOL = "icechunk_writer"


@dg.asset(
    partitions_def=model_experiment_partitions_def,
    backfill_policy=PARTITION_BACKFILL_POLICY,
    group_name="ismip6",
    kinds={"icechunk"},
    owners=["team:ismip6"],
    tags={"ismip6/stage": "commit"},
    pool=WRITER_POOL,
)
def icechunk_commit(
    context: dg.AssetExecutionContext,
    archive: ArchiveResource,
    file_index: dict[str, pd.DataFrame],
    virtual_dataset: dict[str, VirtualizationResult],
) -> dg.MaterializeResult:
    """The partition's groups ``{INST}_{MODEL}/{EXP}/{variable}`` in the Icechunk store, one commit per partition.

    Partitioned per model/experiment: one commit per partition keeps each delivery atomic. Writes
    only what the store lacks (missing/stale files), removes groups whose source is gone, records
    current failures, and rebuilds the partition's view (every variable on model years) in the same
    commit. Metadata: the commit, the view (years, variables, those left out and why), a copy-paste
    xarray snippet that opens the view and a preview map of one time slice read back through the
    store (proof that the virtual references resolve). A run over several partitions commits them
    one after another, each in its own commit with its own metadata.
    """
    keys = list(file_index)
    # What each materialization shows is read back from its commit, and its failure log written,
    # while the next ones are made (those made before a failed one included), several side by side on gs://.
    read_back: list[tuple[Committed, Future]] = []
    with alongside(lambda done: commit_metadata(archive, done), partitions_at_once(archive.store, archive.source)) as submit:
        try:
            for i, done in enumerate(commit_all(archive, keys, file_index, virtual_dataset), start=1):
                read_back.append((done, submit(done)))
                context.log.info(f"[{i}/{len(keys)}] {done.partition}: {done.message or NOTHING_TO_COMMIT}")
        finally:
            for done, future in read_back:
                metadata, warning = future.result()
                if warning:
                    context.log.warning(f"{done.partition}: preview {warning}")
                context.add_asset_metadata(metadata, partition_key=str(done.partition))
    return dg.MaterializeResult()


NOTHING_TO_COMMIT = "nothing to commit: the store already matched the archive"


@dataclass
class Committed:
    """One partition's commit: what was planned and what landed (`snapshot` None: nothing)."""

    partition: PartitionKey
    rows: pd.DataFrame
    plan: CommitPlan
    failures: list
    snapshot: str | None
    message: str


def commit_all(
    archive: ArchiveResource, keys: list[str], file_index: dict[str, pd.DataFrame], virtualized: dict[str, VirtualizationResult]
) -> Iterator[Committed]:
    """The partitions' commits in turn (`commits_in_turn`: on object storage each one written while
    the last one's commit is in flight), each planned only in the session it is written in
    (`replan`: at the head it commits on, so what another machine committed meanwhile is not
    committed twice; a plan read before it, in a session of its own, cost one more look-up of the
    branch: a round trip on gs://)."""
    partitions = [PartitionKey.parse(k) for k in keys]
    plans: dict[str, CommitPlan | None] = {}  # each partition's last plan, the one its commit (or no commit) followed

    def planner(partition: PartitionKey, key: str):
        again = replan(partition, file_index[key], virtualized[key].files, virtualized[key].failures)

        def plan_in_session(session) -> CommitPlan | None:
            plans[key] = again(session)
            return plans[key]

        return plan_in_session

    jobs = [(partition, planner(partition, key)) for partition, key in zip(partitions, keys, strict=True)]
    overlap = archive.store.writer_lock_path is None  # object storage: no writer lock to hold
    landed = commits_in_turn(archive.repository(), jobs, lock=archive.writer_lock, overlap=overlap)
    for key, partition, (snapshot, message) in zip(keys, partitions, landed):
        failures = virtualized[key].failures
        # None: the store already matched the archive (another writer's commit, or an earlier run's).
        plan = plans.get(key) or CommitPlan([], [], failures)
        yield Committed(partition, file_index[key], plan, failures, snapshot, message)


def commit_metadata(archive: ArchiveResource, done: Committed) -> tuple[dict, str]:
    """The failure log of a commit's partition, written (beside the commits, not between them), and
    the metadata its materialization shows, and why its preview failed ("" when it did not)."""
    failures_url = write_failures(archive.store, done.failures)
    repo, partition, plan, snapshot = archive.repository(), done.partition, done.plan, done.snapshot
    # No commit: another writer did the work (commit_partition's replan), so this run wrote nothing.
    written = [vf.group for vf in plan.write] if snapshot else []
    removed = [partition.variable_group(v) for v in plan.remove] if snapshot else []
    # One session, at the commit just made, serves every read below (each fresh session of the
    # branch looks up its head first: a round trip on gs://).
    session = repo.readonly_session(snapshot_id=snapshot) if snapshot else repo.readonly_session(BRANCH)
    stored = stored_variables(repo, partition, session=session)
    preview, preview_error = None, ""
    try:
        preview = partition_preview(repo, partition, stored=stored, session=session)
    except Exception as exc:  # noqa: BLE001 - a preview that cannot read its refs says so; the check judges the store
        preview_error = f"reading through the store failed: {one_line(exc)}"
    example = preview.variable if preview else (stored[0] if stored else "lithk")
    view = read_view(session.store, partition)
    return {
            "commit_id": snapshot or "",
            "commit_message": done.message or NOTHING_TO_COMMIT,
            "branch_head": session.snapshot_id,  # the head this commit made (or found nothing to change on)
            "files": len(done.rows),
            "groups_written": len(written),
            "groups_removed": len(removed),
            "partition_groups": len(stored),  # this partition's variable groups on the branch head
            "chunk_refs_written": sum(vf.chunk_refs for vf in plan.write),
            "failures": len(plan.failures),
            "groups_added": group_list(written),
            "groups_deleted": group_list(removed),
            "failure_table": failure_table(plan.failures),
            **({"failures_log": dg.MetadataValue.path(failures_url)} if failures_url else {}),
            **view_metadata(view),
            "open_with_xarray": snippet(open_code(archive.store, archive.source, partition, view, example)),
            "preview": preview_markdown(preview, preview_error),
    }, preview_error
