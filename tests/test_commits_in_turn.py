"""A run's partitions committed in turn on gs://, each written while the last one's commit is in flight."""

from __future__ import annotations

import uuid
from urllib.parse import unquote

import pytest

from ismip6_assets.core.commits_in_turn import commits_in_turn
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.reconcile import replan, store_diff
from ismip6_assets.core.store import open_repository
from ismip6_assets.core.store_state import read_partition_state
from ismip6_assets.core.virtualize import virtualize_rows
from tests.support.gcs_fixtures import STORE_BUCKET, emulator_access, gcs, gcs_archive, gcs_emulator  # noqa: F401 - fixtures

pytestmark = pytest.mark.gcs


def test_overlapped_commits_land_once_each_and_write_each_manifest_once(gcs, gcs_archive):
    """Every partition of the sample archive (sibling experiments of new models among them, whose
    sessions conflict on the model's group) committed into a new gs:// store, one after another and
    overlapped: each lands in one commit, the store is behind on none, and the overlapped commits
    write as many manifests as the plain ones (a stale session committed with ``rebase_with`` writes
    all of its manifests twice)."""
    source = parse_location("gs://ismip6", "source", emulator_access())
    listing = list_archive(source)
    keys = listing.partitions
    assert len(keys) >= 4 and len({PartitionKey.parse(k).model_group for k in keys}) < len(keys)  # siblings
    virtualized = {k: virtualize_rows(listing.for_partition(k).to_dict("records"), source) for k in keys}
    manifests, messages = {}, {}
    for overlap in (False, True):
        store = parse_location(f"gs://{STORE_BUCKET}/{uuid.uuid4().hex[:8]}", "store", emulator_access())
        repo = open_repository(store, source)
        jobs = [(PartitionKey.parse(k), replan(PartitionKey.parse(k), listing.for_partition(k), virtualized[k].files, virtualized[k].failures)) for k in keys]
        gcs.requests(clear=True)
        landed = list(commits_in_turn(repo, jobs, overlap=overlap))
        manifests[overlap] = sum(1 for method, target, *_ in gcs.requests(clear=True) if method == "PUT" and "/manifests/" in unquote(target))
        messages[overlap] = [message for _, message in landed]
        assert all(snapshot for snapshot, _ in landed), landed
        assert len(list(repo.ancestry(branch="main"))) == len(keys) + 1  # one commit a partition, after the first
        for key in keys:
            partition = PartitionKey.parse(key)
            assert not store_diff(partition, listing.for_partition(key), read_partition_state(repo, partition)).behind, key
    assert messages[True] == messages[False]
    assert manifests[True] == manifests[False] > 0
