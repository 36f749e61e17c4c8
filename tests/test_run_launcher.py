"""The one-machine run launcher's warm run workers (defs/run_launcher.py)."""

from __future__ import annotations

import subprocess
import sys

import yaml

from ismip6_assets.cli.daemon_process import ONE_MACHINE_INSTANCE
from ismip6_assets.defs.run_launcher import LocalRunLauncher
from ismip6_assets.defs.run_worker import PRELOAD, warm_workers_configured


def test_the_fork_server_preloads_no_rust_runtime():
    """Icechunk starts Tokio threads when imported; a run worker forked from a server that had
    imported it hung in `Repository.open` (every run, forever). What PRELOAD imports must not load it."""
    probe = f"import sys; [__import__(m) for m in {PRELOAD!r}]; print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'icechunk'}}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_warm_workers_are_the_one_machine_default_and_can_be_turned_off(tmp_path):
    assert warm_workers_configured(str(ONE_MACHINE_INSTANCE.parent))
    config = yaml.safe_load(ONE_MACHINE_INSTANCE.read_text())
    config["run_launcher"]["config"] = {"warm_run_workers": False}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    assert not warm_workers_configured(str(tmp_path))
    assert not warm_workers_configured(str(tmp_path / "absent"))
    assert LocalRunLauncher.from_config_value(None, {"warm_run_workers": False}).warm is False
    assert LocalRunLauncher.from_config_value(None, {}).warm is True
