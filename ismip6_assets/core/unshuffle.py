"""HDF5's shuffle filter undone with NumPy, for the sea level's reads of the views' fields.

numcodecs' ``Shuffle.decode`` keeps the GIL for the whole chunk (a Cython loop called from Python),
so the two threads that read a view's blocks took turns there; NumPy's strided copies release it.
The codec is zarr's own ``numcodecs.shuffle`` with that decode: same metadata, same bytes out
(tests/test_sea_level.py compares the two), registered as another implementation of the codec and
selected only where `sea_level.open_view` asks for it (`selected`), so every other read in the
process keeps zarr's default.
"""

from __future__ import annotations

import numpy as np
import zarr
from zarr.codecs.numcodecs import Shuffle as ZarrShuffle
from zarr.core.buffer.cpu import as_numpy_array_wrapper

QUALNAME = f"{__name__}.Shuffle"


def selected() -> dict:
    """zarr config under which arrays open with this implementation of ``numcodecs.shuffle``: the
    whole ``codecs`` table (a dotted key cannot name ``numcodecs.shuffle`` inside it)."""
    return {"codecs": {**zarr.config.get("codecs"), "numcodecs.shuffle": QUALNAME}}


def unshuffle(data, elementsize: int) -> np.ndarray:
    """The bytes of `data` (shuffled by HDF5's filter: every element's first byte, then every
    second byte, ...) back in element order; a trailing partial element is left as it is."""
    src = np.frombuffer(memoryview(data).cast("B"), "u1")
    out = np.empty_like(src)
    count = src.size // elementsize
    for k in range(elementsize):
        out[k : count * elementsize : elementsize] = src[k * count : (k + 1) * count]
    out[count * elementsize :] = src[count * elementsize :]
    return out


class Shuffle(ZarrShuffle):
    """zarr's ``numcodecs.shuffle`` codec, decoded by `unshuffle`."""

    def _decode_sync(self, chunk_data, chunk_spec):
        elementsize = int(self.codec_config.get("elementsize") or chunk_spec.dtype.to_native_dtype().itemsize)
        return as_numpy_array_wrapper(lambda buf: unshuffle(buf, elementsize), chunk_data, chunk_spec.prototype)

    def evolve_from_array_spec(self, array_spec):
        evolved = super().evolve_from_array_spec(array_spec)
        return evolved if isinstance(evolved, Shuffle) else Shuffle(**evolved.codec_config)


zarr.registry.register_codec("numcodecs.shuffle", Shuffle, qualname=QUALNAME)
