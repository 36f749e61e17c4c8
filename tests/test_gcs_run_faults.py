"""A permanent storage error fails the partition's run with a message naming the object."""

from __future__ import annotations

import dagster as dg
import pytest

from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.cli.runs import run_partition
from tests.support.gcs_fixtures import emulator_access, emulator_host, STORE_BUCKET, gcs, gcs_archive, gcs_emulator  # noqa: F401 - fixtures

KEY = "AWI/PISM1/exp05"


@pytest.mark.gcs
def test_permanent_write_error_fails_the_run_naming_the_object(gcs, gcs_archive):  # noqa: F811
    prefix = "permanent-run"
    archive = ArchiveResource(source_url="gs://ismip6", store_url=f"gs://{STORE_BUCKET}/{prefix}", storage_emulator_host=emulator_host())
    archive.repository()  # the repository exists; from now on every write under it is refused
    gcs.inject(1000, 403, method="PUT", path=f"{prefix}/")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("model_experiment", [KEY])
        outcome = run_partition(archive, instance, KEY)
    assert outcome.status == "FAILED"
    reason = outcome.findings[0]["item"]
    assert f"{STORE_BUCKET}/{prefix}/" in reason and "403" in reason, reason
