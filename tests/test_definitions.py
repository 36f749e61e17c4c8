import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from ismip6_assets.definitions import defs

REPO = Path(__file__).resolve().parents[1]


def commit_policy_batches(defs) -> bool:
    """Every partitioned asset batches partitions into runs the same way (one run covers all four)."""
    policies = {defs.resolve_assets_def(k).backfill_policy for k in ("file_index", "virtual_dataset", "icechunk_commit", "ice_volume")}
    return len(policies) == 1 and policies.pop().max_partitions_per_run == 25


def test_definitions_name_the_product():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {"file_index", "virtual_dataset", "icechunk_commit", "ice_volume", "store_catalog", "sea_level"}
    assert {k.name for k in graph.asset_check_keys} == {"reconciliation"}
    sensor = defs.resolve_sensor_def("archive_sensor")  # targets the assets it requests backfills of
    assert {k.to_user_string() for k in sensor.asset_selection.resolve(graph)} == {"file_index", "virtual_dataset", "icechunk_commit", "ice_volume", "store_catalog", "sea_level"}
    assert commit_policy_batches(defs)
    commit = defs.resolve_assets_def("icechunk_commit")
    assert commit.partitions_def.name == "model_experiment"
    assert commit.op.pool == "icechunk_writer"


def test_dagster_definitions_validate_loads_the_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ISMIP6_SOURCE_URL": str(tmp_path / "src"), "ISMIP6_STORE_URL": str(tmp_path / "store")}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dg_lists_our_definitions_from_the_repo(tmp_path):
    """`dg dev` / `dg launch` find the code location through pyproject's [tool.dg]; `dg list defs`
    loads it the same way (without [tool.dg] it refuses: "must be run inside a Dagster project")."""
    import json

    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ISMIP6_SOURCE_URL": str(tmp_path / "src"), "ISMIP6_STORE_URL": str(tmp_path / "store")}
    dg_cli = Path(sys.executable).with_name("dg")
    proc = subprocess.run([str(dg_cli), "list", "defs", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = json.loads(proc.stdout)
    assert {a["asset_key"] for a in listed["assets"]} == {"file_index", "virtual_dataset", "icechunk_commit", "ice_volume", "store_catalog", "sea_level"}
    assert "archive_sensor" in {s["name"] for s in listed["sensors"]}
    assert "materialize_partition" in {j["name"] for j in listed["jobs"]}


def test_instance_config_limits_the_icechunk_writer_pool(monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(REPO / "dagster_home"))
    config = dg.DagsterInstance.from_config(str(REPO / "dagster_home")).get_concurrency_config()
    assert config.pool_config.default_pool_limit == 2  # one commit step per run at once (tests/test_deploy.py)
