"""One partition per model/experiment: ``INST/MODEL/EXP`` (see `paths.PartitionKey`).

A backfill (the UI's, the sensor's, `ismip6 run`'s) runs up to `PARTITIONS_PER_RUN` partitions in
one run: a run's start-up (a process, the imports, the code location) is paid once for them, while
each partition keeps its own commit, materializations and reconciliation result. A single
partition's run (a refresh after one changed file) stays one partition.
"""

import warnings

import dagster as dg

# `backfill_policy` on an asset is beta in Dagster 1.13; we rely on it knowingly, here.
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy`", category=dg.BetaWarning)

model_experiment_partitions_def = dg.DynamicPartitionsDefinition(name="model_experiment")

PARTITIONS_PER_RUN = 25
PARTITION_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN)
