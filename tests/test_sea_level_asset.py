"""The `sea_level` asset through Dagster: `ismip6 run`'s engine brings it up to date after the
commits, and its metadata carries the numbers and a picture per experiment."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from ismip6_assets.defs.resources import ArchiveResource
from ismip6_assets.cli.runs import run_archive
from tests.sea_level_support import write_real_numbers_archive


@pytest.mark.slow
def test_a_run_brings_the_sea_level_up_to_date_with_a_picture_per_experiment(tmp_path, instance):
    archive_dir, store_dir = tmp_path / "archive", tmp_path / "store"
    write_real_numbers_archive(archive_dir)
    archive = ArchiveResource(source_url=str(archive_dir), store_url=str(store_dir))

    outcomes = run_archive(archive, instance, in_process=True)

    assert {o.status for o in outcomes} == {"OK"}, [(o.partition, o.findings) for o in outcomes]
    table = pd.read_parquet(store_dir / "derived" / "sea_level.parquet")
    at_2100 = table[(table.experiment == "exp05") & (table.year == 2099)].set_index("institution")
    assert abs(at_2100.loc["JPL1", "sle_mm"] - (-11.2)) <= 0.05
    event = instance.get_latest_materialization_event(dg.AssetKey("sea_level"))
    metadata = event.asset_materialization.metadata
    assert metadata["partitions_recomputed"].value == 6 and metadata["left_out"].value == 0
    # Each partition's volumes were read in its own run (`ice_volume`), not again by the sea level.
    assert metadata["partitions_from_ice_volume"].value == 6
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("ice_volume"), asset_partitions=["JPL1/ISSM/exp05"]), limit=1).records
    volume = records[0].asset_materialization.metadata
    assert volume["recomputed"].value is True and volume["last_year"].value == 2099 and volume["left_out"].value == ""
    assert volume["volume_json"].value.endswith("/derived/volumes/JPL1_ISSM/exp05.json")
    assert metadata["picture_exp05"].value.startswith("![exp05: sea-level contribution") and "data:image/png;base64," in metadata["picture_exp05"].value
    assert "picture_ctrl_proj_std" not in metadata  # a control has no sea-level contribution to draw
    assert "| exp05 | 2 |" in metadata["sea_level_2100"].value
    assert metadata["sea_level_parquet"].value.endswith("/derived/sea_level.parquet")
