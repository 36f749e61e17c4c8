"""Expose contiguous uncompressed arrays as one virtual chunk per time step.

DOE_MALI, JPL1_ISSM and UCIJPL_ISSM store their 3-D fields contiguous and uncompressed, which
VirtualiZarr's HDF5 parser (and its NetCDF3 parser, for non-record variables) exposes as a single
chunk spanning the whole file: a reader of one year would fetch every year. The bytes of step ``i``
sit at ``base + i * stride`` with ``stride`` the size of one step, so the one reference can be
rewritten as ``T`` references without reading anything.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from zarr.codecs import BytesCodec

from ismip6_assets.core.fixes import FixReport


def split_along_first_axis(marr):
    """A single-chunk, uncompressed `ManifestArray` re-expressed with one chunk per first-axis index.

    Returns None when the array is not one contiguous uncompressed chunk over its whole shape.
    """
    from virtualizarr.manifests import ChunkManifest, ManifestArray
    from virtualizarr.manifests.utils import copy_and_replace_metadata

    metadata, manifest = marr.metadata, marr.manifest
    if marr.ndim < 2 or marr.shape[0] < 2 or tuple(metadata.chunks) != tuple(marr.shape):
        return None
    # Only a bare byte serializer leaves step i at a computable offset; any filter or compressor
    # (or sharding) makes the chunk opaque.
    if len(metadata.codecs) != 1 or not isinstance(metadata.codecs[0], BytesCodec):
        return None
    refs = list(manifest.iter_refs())
    if len(refs) != 1 or not refs[0][1]["path"] or "data" in refs[0][1]:
        return None
    entry = refs[0][1]
    stride = math.prod(marr.shape[1:]) * marr.dtype.itemsize
    if int(entry["length"]) != stride * marr.shape[0]:
        return None
    steps = marr.shape[0]
    grid = (steps,) + (1,) * (marr.ndim - 1)
    new_manifest = ChunkManifest.from_arrays(
        paths=np.full(grid, entry["path"], dtype=np.dtypes.StringDType()),
        offsets=(int(entry["offset"]) + np.arange(steps, dtype=np.uint64) * np.uint64(stride)).reshape(grid),
        lengths=np.full(grid, stride, dtype=np.uint64),
        validate_paths=False,
    )
    new_metadata = copy_and_replace_metadata(metadata, new_chunks=[1, *marr.shape[1:]])
    return ManifestArray(metadata=new_metadata, chunkmanifest=new_manifest)


class SplitContiguousTime:
    """Split every single-chunk uncompressed variable whose first dim is ``time``."""

    def __init__(self, dim: str = "time") -> None:
        self.dim = dim

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        from virtualizarr.manifests import ManifestArray

        for name, var in list(ds.variables.items()):
            if not isinstance(var.data, ManifestArray) or not var.dims or var.dims[0] != self.dim:
                continue
            split = split_along_first_axis(var.data)
            if split is not None:
                ds[name] = xr.Variable(var.dims, split, var.attrs, var.encoding)
                report.quirk("contiguous_split_per_time_step")
        return ds
