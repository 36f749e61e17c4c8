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

from ismip6_assets.locations import parse_location
from ismip6_assets.settings import STORE_ENV

# Values of the last few outputs of this process, by (store, asset, partition, run id): a run's
# later steps read them, then they age out; a partition's values are a few kB to a few MB.
_recent: OrderedDict[tuple, object] = OrderedDict()
RECENT_VALUES = 16


class StorePickleIOManager(dg.ConfigurableIOManager):
    """Pickles outputs under ``{STORE}/dagster/{asset}/{INST}/{MODEL}/{EXP}.pkl``."""

    store_url: str

    def _target(self, context: dg.OutputContext | dg.InputContext):
        store = parse_location(self.store_url, STORE_ENV)
        partition = context.asset_partition_key if context.has_asset_partitions else "__unpartitioned__"
        return store, store.join("dagster", *context.asset_key.path, f"{partition}.pkl")

    def _key(self, target, run_id: str | None) -> tuple:
        return (target.url, run_id)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        store, target = self._target(context)
        store.put_atomic(target, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))  # one upload on gs://
        _recent[self._key(target, context.run_id)] = obj
        while len(_recent) > RECENT_VALUES:
            _recent.popitem(last=False)

    def load_input(self, context: dg.InputContext):
        store, target = self._target(context)
        upstream = context.upstream_output
        key = self._key(target, upstream.run_id if upstream is not None else None)
        if key in _recent:
            return _recent[key]
        with store.fs.open(target.fs_path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - our own files, written by handle_output
