"""What the fork server of `runner._worker_context` imports once for every worker it forks.

Third-party modules only, and none that starts Tokio: importing Icechunk starts its runtime's
threads, and a child forked after that inherits them dead (its first `Repository.open` never
returns). Icechunk and this package are imported by each worker (~0.1 s of CPU); these take ~2.5 s.
`tests/test_runner_parallel.py` checks that nothing here imports Icechunk.
"""

import dagster  # noqa: F401
import dagster._core.storage.event_log  # noqa: F401
import dagster._core.storage.runs  # noqa: F401
import dagster_gcp  # noqa: F401
import gcsfs  # noqa: F401
import google.cloud.storage  # noqa: F401
import h5netcdf  # noqa: F401
import h5py  # noqa: F401
import netCDF4  # noqa: F401
import obstore  # noqa: F401
import PIL.Image  # noqa: F401
import pystac  # noqa: F401
import scipy.io  # noqa: F401
import virtualizarr  # noqa: F401
import virtualizarr.parsers  # noqa: F401
import xarray  # noqa: F401
import zarr  # noqa: F401


def loaded() -> dict[str, bool]:
    """What a process forked from the server holds (tests/test_runner_parallel.py)."""
    import sys

    return {"preload": __name__ in sys.modules, "icechunk": "icechunk" in sys.modules, "virtualizarr": "virtualizarr" in sys.modules}
