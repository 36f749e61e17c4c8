"""Persists intermediate asset values beside the store, so `icechunk_commit` can be re-run
without re-virtualizing (a virtual dataset is a few kB per file: references, not data).

Within one process (every step of a `materialize_partition` run, and `ismip6 run`'s workers) the
next step gets the value from memory: on gs:// reading it back cost ~3 round trips per value
(info, listing, download) for bytes this process already holds. Re-executing a step in another
process (the UI's "re-execute from failure") reads the pickle from the store.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict

import dagster as dg

from ismip6_assets.defs.resources import ArchiveResource

# Values of the last outputs of this process, by (store, asset, partition, run id): a run's later
# steps read them, then they age out; a partition's values are a few kB to a few MB.
_recent: OrderedDict[tuple, object] = OrderedDict()
RECENT_VALUES = 64


class StorePickleIOManager(dg.ConfigurableIOManager):
    """Pickles outputs under ``{STORE}/dagster/{asset}/{INST}/{MODEL}/{EXP}.pkl``, one file a partition.

    A run may cover several partitions (the backfill policy batches them): a partitioned asset's
    value is then a dict by partition key, stored a partition per file, and an input over several
    partitions is loaded as such a dict again.
    """

    archive: ArchiveResource

    def _relpath(self, context: dg.OutputContext | dg.InputContext, partition: str) -> str:
        return "/".join(["dagster", *context.asset_key.path, f"{partition}.pkl"])

    def _target(self, context: dg.OutputContext | dg.InputContext, partition: str):
        store = self.archive.store
        return store, store.join(self._relpath(context, partition))

    @staticmethod
    def _partitions(context: dg.OutputContext | dg.InputContext) -> list[str]:
        return list(context.asset_partition_keys) if context.has_asset_partitions else ["__unpartitioned__"]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        store = self.archive.store
        values = {self._relpath(context, p): obj[p] if context.has_asset_partitions else obj for p in self._partitions(context)}
        # A run's partitions in one concurrent batch on gs://, not a round trip each.
        store.put_many({relpath: pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) for relpath, value in values.items()})
        for relpath, value in values.items():
            _recent[(store.join(relpath).url, context.run_id)] = value
        while len(_recent) > RECENT_VALUES:
            _recent.popitem(last=False)

    def load_input(self, context: dg.InputContext):
        upstream = context.upstream_output
        run_id = upstream.run_id if upstream is not None else None
        values = {}
        for partition in self._partitions(context):
            store, target = self._target(context, partition)
            if (target.url, run_id) in _recent:
                values[partition] = _recent[(target.url, run_id)]
                continue
            with store.fs.open(target.fs_path, "rb") as f:
                values[partition] = pickle.load(f)  # noqa: S301 - our own files, written by handle_output
        return values if context.has_asset_partitions else values["__unpartitioned__"]
