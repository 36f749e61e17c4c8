"""Shared fixtures: real NetCDF sample archives in tmp dirs, real Icechunk stores, real Dagster."""

from __future__ import annotations

import os
import shutil
import warnings

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
warnings.filterwarnings("ignore", category=UserWarning)

import dagster as dg  # noqa: E402
import icechunk  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from ismip6_assets.defs.resources import ArchiveResource  # noqa: E402
from ismip6_assets.core.sample_archive import write_sample_archive  # noqa: E402

N_TIMES = 3


@pytest.fixture(scope="session")
def pristine_archive(tmp_path_factory):
    """The sample archive, written once; copy it (see `archive`) before changing anything."""
    root = tmp_path_factory.mktemp("pristine") / "archive"
    write_sample_archive(root, n_times=N_TIMES)
    return root


@pytest.fixture
def archive_dir(tmp_path, pristine_archive):
    dest = tmp_path / "archive"
    shutil.copytree(pristine_archive, dest)
    return dest


@pytest.fixture
def store_dir(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def archive(archive_dir, store_dir):
    return ArchiveResource(source_url=str(archive_dir), store_url=str(store_dir))


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def run_committed(archive, archive_dir, store_dir, instance):
    """Run a partition of the sample archive through Dagster (its check OK); return the store as a
    user opens it."""
    from ismip6_assets.cli.runs import run_partition

    def run(key: str) -> icechunk.Repository:
        instance.add_dynamic_partitions("model_experiment", [key])
        assert run_partition(archive, instance, key).status == "OK"
        return open_plain_repo(store_dir, archive_dir)

    return run


def open_plain_repo(store_dir, source_dir) -> icechunk.Repository:
    """Open the store the way a user would: plain icechunk, no project code."""
    prefix = f"file://{os.path.realpath(source_dir)}/"
    return icechunk.Repository.open(
        icechunk.local_filesystem_storage(str(store_dir)),
        authorize_virtual_chunk_access=icechunk.containers_credentials({prefix: icechunk.credentials.LocalFileSystemAccess}),
    )


def open_group(repo: icechunk.Repository, group: str) -> xr.Dataset:
    return xr.open_zarr(repo.readonly_session("main").store, group=group, consolidated=False, decode_times=True)


_exit_status = {}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without interpreter finalization, after pytest has reported everything.

    Processes that used icechunk/obstore/h5py segfaulted intermittently (about 1 in 6 here) while
    the interpreter tore down native extension state, after all output; that must not turn a green
    run red. The exit status is pytest's own.
    """
    import sys

    if "code" in _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["code"])
