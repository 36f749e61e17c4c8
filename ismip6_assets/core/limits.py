"""Bounds a source file must stay within before anything of it is stored.

A hostile or broken header can declare dimensions far beyond the file's bytes or attributes of
many megabytes; such a file becomes a failure record with one readable line, instead of a store
group that cannot be read or metadata that bloats every reader's open. The bounds are far above
the real archive (largest grid 1521×1521, at most a few hundred time steps, attributes of a few kB).
"""

from __future__ import annotations

import json

import xarray as xr

from ismip6_assets.core.formats import UnreadableFile

MAX_DIMENSION = 10_000_000
MAX_ATTRIBUTE_BYTES = 64 * 1024


def _attribute_bytes(value) -> int:
    try:
        return len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return len(str(value))


def check_limits(ds: xr.Dataset) -> None:
    """Raise `UnreadableFile` naming the first dimension or attribute out of bounds."""
    for name, size in ds.sizes.items():
        if size > MAX_DIMENSION:
            raise UnreadableFile(f"dimension {name!r} declares {size:,} entries (limit {MAX_DIMENSION:,}): broken or hostile header")
    for owner, attrs in [("global", ds.attrs), *((f"variable {k!r}", v.attrs) for k, v in ds.variables.items())]:
        for key, value in attrs.items():
            size = _attribute_bytes(value)
            if size > MAX_ATTRIBUTE_BYTES:
                raise UnreadableFile(f"{owner} attribute {key!r} is {size:,} bytes (limit {MAX_ATTRIBUTE_BYTES:,})")
