"""Metadata users need: the variable's ISMIP6 type, and literal sentinels in the ocean.

Sentinel detection reads only the first time slice of each field, through the virtual references
(the same bytes a reader of the store would fetch), never the whole file.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ismip6_assets.core.fixes import FixReport, SourceFile
from ismip6_assets.core.variables import variable_type

VARIABLE_ATTR = "ismip6_variable"
VARIABLE_TYPE_ATTR = "ismip6_variable_type"


class VariableType:
    """Record the ISMIP6 variable name and its type (``ST`` state snapshot, ``FL`` yearly flux)."""

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        if report.source is None:
            return ds
        name = report.source.variable
        ds.attrs[VARIABLE_ATTR] = name
        ds.attrs[VARIABLE_TYPE_ATTR] = variable_type(name)
        if name in ds.data_vars:
            ds[name].attrs[VARIABLE_TYPE_ATTR] = variable_type(name)
        return ds


def read_first_slice(marr, registry) -> np.ndarray:
    """The first 2-D slice of a `ManifestArray` (index 0 of a 3-D one), read through its references only."""
    import zarr
    from virtualizarr.manifests import ManifestGroup, ManifestStore

    store = ManifestStore(group=ManifestGroup(arrays={"a": marr}, attributes={}), registry=registry)
    array = zarr.open_array(store, path="a", mode="r", zarr_format=3)
    return np.asarray(array[0] if array.ndim == 3 else array[...])


def sentinel_attrs(field: np.ndarray, declared_fill=None) -> dict:
    """``ignore_value`` (and ``valid_min``/``valid_max`` when it lies outside the data) for a 2-D field.

    The sentinel is the one finite value shared by the four corners (the ocean, far from the ice
    sheet); a value already declared as ``_FillValue`` is masked by readers and needs nothing.

    Parameters
    ----------
    field
        The first time slice, as stored in the source (no masking applied).
    declared_fill
        The fill value readers already mask, from `declared_fill`.

    Returns
    -------
    dict
        Attributes to add to the array; empty when there is no sentinel.
    """
    corners = np.array([field[0, 0], field[0, -1], field[-1, 0], field[-1, -1]])
    value = corners[0]
    if not np.isfinite(value) or not np.all(corners == value) or (declared_fill is not None and value == declared_fill):
        return {}
    attrs = {"ignore_value": value.item()}
    data = field[np.isfinite(field) & (field != value)]
    if data.size and (value < data.min() or value > data.max()):
        attrs.update(valid_min=data.min().item(), valid_max=data.max().item())
    return attrs


class SentinelValue:
    """Record a literal ocean sentinel (0.0, 1e20, …) on each field that has one."""

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        from virtualizarr.manifests import ManifestArray

        source: SourceFile | None = report.source
        if source is None or source.registry is None:
            return ds
        for name, var in ds.data_vars.items():
            # 3-D fields and 2-D ones without time (hfgeoubed); floats only: sentinels are 0.0 or 1e20.
            if not isinstance(var.data, ManifestArray) or var.ndim not in (2, 3) or var.dtype.kind != "f":
                continue
            attrs = sentinel_attrs(read_first_slice(var.data, source.registry), declared_fill(var))
            if attrs:
                ds.variables[name].attrs.update(attrs)
                report.quirk("sentinel_value")
        return ds


def declared_fill(var: xr.Variable):
    """The CF fill value a reader already masks, or None.

    VirtualiZarr keeps ``_FillValue`` base64-encoded in the attrs and decoded in the zarr metadata,
    whose ``fill_value`` is also set (to 0 or netCDF's default) when the file declared none.
    """
    if "_FillValue" in var.attrs or "_FillValue" in var.encoding:
        return var.data.metadata.fill_value
    value = var.attrs.get("missing_value")
    return value if isinstance(value, (int, float)) else None
