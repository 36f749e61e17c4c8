"""Per-format seam: choose VirtualiZarr's parser from a file's magic bytes.

Each parser follows VirtualiZarr's `Parser` protocol (configured in ``__init__``, works in
``__call__``), so adding a format is one entry in `PARSERS`, not another branch elsewhere.
"""

from __future__ import annotations

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NETCDF3_MAGIC = b"CDF"


class UnreadableFile(ValueError):
    """A source file that is not a NetCDF file we can virtualize; the message is one human line."""


def detect_format(head: bytes, size: int) -> str:
    """``netcdf4`` (HDF5) or ``netcdf3`` (classic, 64-bit offset, CDF-5) from the first bytes."""
    if size == 0:
        raise UnreadableFile("file is empty (0 bytes)")
    if head.startswith(HDF5_MAGIC):
        return "netcdf4"
    if head[:3] == NETCDF3_MAGIC and len(head) > 3 and head[3] in (1, 2, 5):
        return "netcdf3"
    raise UnreadableFile(f"not a NetCDF file: starts with {head[:8]!r}, expected HDF5 or CDF magic bytes")


def make_parser(file_format: str):
    from virtualizarr.parsers import HDFParser, NetCDF3Parser

    return {"netcdf4": HDFParser, "netcdf3": NetCDF3Parser}[file_format]()
