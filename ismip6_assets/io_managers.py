"""Persists intermediate asset values beside the store, so `icechunk_commit` can be re-run
without re-virtualizing (a virtual dataset is a few kB per file: references, not data)."""

from __future__ import annotations

import pickle

import dagster as dg

from ismip6_assets.locations import parse_location
from ismip6_assets.settings import STORE_ENV


class StorePickleIOManager(dg.ConfigurableIOManager):
    """Pickles outputs under ``{STORE}/dagster/{asset}/{INST}/{MODEL}/{EXP}.pkl``."""

    store_url: str

    def _target(self, context: dg.OutputContext | dg.InputContext):
        store = parse_location(self.store_url, STORE_ENV)
        partition = context.asset_partition_key if context.has_asset_partitions else "__unpartitioned__"
        return store, store.join("dagster", *context.asset_key.path, f"{partition}.pkl")

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        store, target = self._target(context)
        store.fs.makedirs(target.fs_path.rsplit("/", 1)[0], exist_ok=True)
        with store.fs.open(target.fs_path, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)

    def load_input(self, context: dg.InputContext):
        store, target = self._target(context)
        with store.fs.open(target.fs_path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - our own files, written by handle_output
