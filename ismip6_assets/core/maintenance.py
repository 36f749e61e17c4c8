"""Keep the store lean: expire old snapshots, collect what nothing references, tag for citation.

Every commit writes a new snapshot of the whole store, one commit per partition, and readers
need only the branch head: one full run leaves a snapshot per partition, most of them never read.
`maintain_store` uses Icechunk's own `expire_snapshots` (history older than the retention leaves
the ancestry; the branch head and every tag stay) and `garbage_collect` (objects no surviving
snapshot references, older than the same cutoff, are deleted). Tags are never expired:
``delete_expired_tags`` stays False, and the tags are compared before and after. No Dagster here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import icechunk

from ismip6_assets.core.store import BRANCH

GC_COUNTS = ("snapshots_deleted", "manifests_deleted", "chunks_deleted", "attributes_deleted", "transaction_logs_deleted", "bytes_deleted")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class TagError(ValueError):
    """A tag name that cannot be used: malformed, or already taken."""


@dataclass
class MaintenanceReport:
    cutoff: datetime
    snapshots_before: int
    snapshots_after: int
    expired: int  # snapshots Icechunk dropped from the history
    deleted: dict[str, int] = field(default_factory=dict)  # GC counts by kind, bytes too
    tags: dict[str, str] = field(default_factory=dict)  # every tag and its snapshot, all kept

    def metadata(self) -> dict:
        """Numbers people read (and the UI plots) in the run's metadata."""
        return {
            "cutoff": self.cutoff.isoformat(timespec="seconds"),
            "snapshots_before": self.snapshots_before,
            "snapshots_after": self.snapshots_after,
            "snapshots_expired": self.expired,
            **self.deleted,
            "tags_kept": len(self.tags),
        }


def reachable_snapshots(repo: icechunk.Repository) -> set[str]:
    """Every snapshot in the history of a branch or a tag."""
    ids = set()
    for branch in repo.list_branches():
        ids |= {s.id for s in repo.ancestry(branch=branch)}
    for tag in repo.list_tags():
        ids |= {s.id for s in repo.ancestry(tag=tag)}
    return ids


def maintain_store(repo: icechunk.Repository, retention: timedelta, now: datetime | None = None) -> MaintenanceReport:
    """Expire snapshots older than `retention` and delete the objects no surviving snapshot needs.

    The caller holds the store's writer lock: garbage collection beside a commit in flight could
    delete what that commit is about to reference (only objects older than the cutoff go, which a
    retention of days makes safe on object stores too).
    """
    cutoff = (now or datetime.now(UTC)) - retention
    tags = {t: repo.lookup_tag(t) for t in sorted(repo.list_tags())}
    before = len(reachable_snapshots(repo))
    expired = repo.expire_snapshots(older_than=cutoff, delete_expired_branches=False, delete_expired_tags=False)
    summary = repo.garbage_collect(cutoff)
    kept = {t: repo.lookup_tag(t) for t in sorted(repo.list_tags())}
    if kept != tags:  # never expected: the flags above keep every tag; say so loudly if Icechunk did not
        raise RuntimeError(f"maintenance changed the tags: {tags} -> {kept}")
    return MaintenanceReport(
        cutoff=cutoff,
        snapshots_before=before,
        snapshots_after=len(reachable_snapshots(repo)),
        expired=len(expired),
        deleted={k: int(getattr(summary, k)) for k in GC_COUNTS},
        tags=kept,
    )


def tag_main(repo: icechunk.Repository, name: str) -> str:
    """Tag the head of ``main`` as `name` (for citation: tags are immutable and never expired); its snapshot id."""
    if not _TAG.fullmatch(name):
        raise TagError(f"tag {name!r}: use letters, digits, '.', '_' or '-' (at most 100, starting with a letter or digit)")
    if name in repo.list_tags():
        raise TagError(f"tag {name!r} already exists (snapshot {repo.lookup_tag(name)}); tags are immutable: choose another name")
    snapshot = repo.lookup_branch(BRANCH)
    repo.create_tag(name, snapshot)
    return snapshot
