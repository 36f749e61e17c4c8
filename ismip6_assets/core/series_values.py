"""The raw values of a time-only series, decoded from bytes already in memory.

A scalar series (lim, iareagr, the tend* budgets) is stored as one chunk a time step: 86 chunks of
4 or 8 bytes. Read through the store, each is a request on gs:// and a trip through zarr's
per-chunk pipeline, so reading one series costs like reading a field. Its bytes lie in the file's
head, which virtualization fetched anyway (source_reads.py), so the series is decoded there, once,
and the partition's view stores it inline as one chunk (views.py): the sea level and every reader
of the view then read it in one request.

`series_values` returns what reading the variable group through zarr returns (the stored dtype,
the array's fill value for a missing chunk), or None when it cannot decode without a request or a
codec it does not know: the view then keeps the references.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from zarr.abc.codec import BytesBytesCodec
from zarr.codecs import BytesCodec


def _byte_order(codec: BytesCodec) -> str:
    endian = getattr(codec.endian, "value", codec.endian)
    return {"little": "<", "big": ">"}.get(endian, "=")


def series_values(manifest_array, read: Callable[[str, int, int], bytes | None]) -> np.ndarray | None:
    """The raw values of a 1-D `ManifestArray` whose chunk bytes ``read(url, start, end)`` gives
    from memory (None: not in memory); None when any chunk is not, or its codecs are not the bytes
    codec followed by numcodecs' bytes-to-bytes codecs (shuffle, zlib, fletcher32, ...)."""
    metadata, manifest = manifest_array.metadata, manifest_array.manifest
    codecs = list(metadata.codecs)
    if len(metadata.shape) != 1 or not codecs or not isinstance(codecs[0], BytesCodec):
        return None
    if not all(isinstance(c, BytesBytesCodec) and hasattr(c, "_codec") for c in codecs[1:]):
        return None
    dtype = metadata.dtype.to_native_dtype()
    stored = dtype.newbyteorder(_byte_order(codecs[0])) if dtype.itemsize > 1 else dtype
    (n,), (chunk,) = metadata.shape, metadata.chunks
    out = np.full(n, metadata.fill_value, dtype=dtype)
    for i, (url, offset, length) in enumerate(zip(manifest._paths, manifest._offsets, manifest._lengths, strict=True)):
        if not url:
            continue  # a missing chunk reads as the fill value
        raw = read(str(url), int(offset), int(offset) + int(length))
        if raw is None:
            return None
        for codec in reversed(codecs[1:]):
            raw = codec._codec.decode(raw)
        values = np.frombuffer(raw if isinstance(raw, bytes | bytearray | memoryview) else np.ascontiguousarray(raw).tobytes(), dtype=stored)
        start = i * chunk
        count = min(chunk, n - start)
        out[start : start + count] = values[:count]
    return out
