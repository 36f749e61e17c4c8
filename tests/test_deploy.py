"""Deploying is configuration: the one-machine instance and a cluster's, loaded without a cluster."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData

from ismip6_assets.defs.run_launcher import LocalRunLauncher
from ismip6_assets.cli.daemon_process import ONE_MACHINE_INSTANCE

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "deploy" / "cluster"
CLUSTER_ENV = {
    "DAGSTER_PG_HOST": "postgres", "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "not-a-secret", "DAGSTER_PG_DB": "dagster",
    "DAGSTER_CURRENT_IMAGE": "ismip6-assets:latest", "ISMIP6_SOURCE_URL": "gs://ismip6", "ISMIP6_STORE_URL": "gs://ismip6-icechunk",
    "ISMIP6_EXECUTOR": "dask://scheduler:8786",
}


def component(config: dict, key: str):
    """The instance's `key` (run_launcher, run_coordinator) built from its config, as Dagster builds it."""
    section = config[key]
    return ConfigurableClassData(section["module"], section["class"], yaml.dump(section.get("config") or {})).rehydrate()


def test_the_repo_instance_is_the_packaged_one_machine_instance():
    assert (REPO / "dagster_home" / "dagster.yaml").read_text() == ONE_MACHINE_INSTANCE.read_text()
    config, _ = dagster_instance_config(str(ONE_MACHINE_INSTANCE.parent))
    launcher = component(config, "run_launcher")
    assert isinstance(launcher, LocalRunLauncher) and launcher.supports_check_run_worker_health  # run monitoring can fail a dead run
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    # no commit step waits for the other run's (a local store's commits are serialized by its writer lock)
    assert config["concurrency"]["pools"]["default_limit"] == config["concurrency"]["runs"]["max_concurrent_runs"] == 2


def test_a_dead_local_run_worker_is_seen(tmp_path):
    """The health check answers from the run worker's pid: a process that ended is FAILED."""
    import subprocess
    import sys

    from ismip6_assets.defs.run_launcher import process_alive

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not process_alive(proc.pid)
    import os

    assert process_alive(os.getpid())


def test_the_cluster_instance_loads_its_launcher_and_the_definitions_without_a_cluster(monkeypatch):
    for name, value in CLUSTER_ENV.items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(CLUSTER))  # the whole file against Dagster's instance schema
    assert "postgres" in config["storage"]
    launcher = component(config, "run_launcher")
    assert type(launcher).__name__ == "DockerRunLauncher" and launcher.supports_check_run_worker_health
    assert {"ISMIP6_SOURCE_URL", "ISMIP6_STORE_URL", "GOOGLE_APPLICATION_CREDENTIALS"} <= set(launcher.env_vars)
    coordinator = component(config, "run_coordinator")
    assert type(coordinator).__name__ == "QueuedRunCoordinator"
    assert config["run_retries"]["enabled"] and config["run_monitoring"]["enabled"]

    # The code location under the cluster's environment: settings as dg.EnvVar, resolved in each run.
    from ismip6_assets.definitions import build_definitions
    from ismip6_assets.defs.resources import archive_resource_from_environment

    archive = archive_resource_from_environment()
    assert archive.source_url == dg.EnvVar("ISMIP6_SOURCE_URL") and archive.executor == dg.EnvVar("ISMIP6_EXECUTOR")
    defs = build_definitions(archive)
    defs.resolve_job_def("materialize_partition")
    resolved = defs.resolve_all_job_defs()[0].resource_defs["archive"]
    assert resolved is not None
    with dg.build_resources({"archive": archive}) as resources:
        assert resources.archive.store_url == "gs://ismip6-icechunk"
        assert resources.archive.settings.executor.address == "tcp://scheduler:8786"
