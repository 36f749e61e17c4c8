"""One partition per model/experiment: ``INST/MODEL/EXP`` (see `paths.PartitionKey`)."""

import dagster as dg

model_experiment_partitions_def = dg.DynamicPartitionsDefinition(name="model_experiment")
