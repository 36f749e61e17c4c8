import dagster as dg

# "Materialize this partition" in one click: the three assets and their check, per partition.
materialize_partition_job = dg.define_asset_job(
    "materialize_partition",
    selection=dg.AssetSelection.assets("file_index", "virtual_dataset", "icechunk_commit"),
    description="Index, virtualize and commit one model/experiment, then reconcile it.",
)
