"""CF metadata that readers' tools understand: the grid mapping and the ISMIP6 variable's names.

Most ISMIP6 files carry no ``grid_mapping`` and no ``standard_name``, so rioxarray, GDAL and
cf-xarray could neither place nor name the data. Every field on the (y, x) grid gets
``grid_mapping = "polar_stereographic"``, a scalar variable holding EPSG:3031's CF parameters and
``crs_wkt``; x/y get their CF axis attributes; the file's variable gets ``standard_name`` and
``long_name`` from the ISMIP6 table, and ``units`` only where the file gives none (a file's own
units describe its numbers; relabelling them would lie about the data).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ismip6_assets.core.fixes import FixReport
from ismip6_assets.core.fixes.grid import EPSG_3031_ATTRS, GRID_MAPPING_NAME
from ismip6_assets.core.variables import VARIABLES

AXIS_ATTRS = {
    "x": {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"},
    "y": {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"},
}


class CFMetadata:
    """``grid_mapping`` on every (y, x) field, and the ISMIP6 names of the file's variable."""

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        fields = [n for n, v in ds.data_vars.items() if v.dims[-2:] == ("y", "x") and n != GRID_MAPPING_NAME]
        if fields:
            ds[GRID_MAPPING_NAME] = xr.Variable((), np.int32(0), dict(EPSG_3031_ATTRS))
            for name in fields:
                ds.variables[name].attrs["grid_mapping"] = GRID_MAPPING_NAME
            for axis, attrs in AXIS_ATTRS.items():
                if axis in ds.variables:
                    ds.variables[axis].attrs.update({k: v for k, v in attrs.items() if k not in ds.variables[axis].attrs})
        known = VARIABLES.get(report.source.variable) if report.source is not None else None
        if known is not None and known.name in ds.data_vars:
            attrs = ds.variables[known.name].attrs
            attrs.update(standard_name=known.standard_name, long_name=known.long_name)
            attrs.setdefault("units", known.units)
        return ds
