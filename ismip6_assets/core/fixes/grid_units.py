"""x/y written in kilometres become metres, the unit of EPSG:3031 and of the ``grid_mapping``.

Also `metres_axis_problem`, the test the reconciliation check applies to a stored group's x/y.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ismip6_assets.core.fixes import FixReport
from ismip6_assets.core.fixes.grid import GRID_HALF_WIDTH, standard_axis

METRES = {"m", "meter", "meters", "metre", "metres"}
KILOMETRES = {"km", "kilometer", "kilometers", "kilometre", "kilometres"}
# An axis whose outermost centre lies within this fraction of ±3,040 is the ISMIP6 grid in km
# (the snapped 192-point grid reaches ±3,056).
KM_EXTENT_TOLERANCE = 0.10
SNAP_METRES = 1.0  # a km axis within a metre of the standard one is that axis


def _units(attrs: dict) -> str:
    return str(attrs.get("units", "") or "").strip().lower()


def in_kilometres(values: np.ndarray, units: str) -> bool:
    """True for an axis in km: by its units, or (no units, or metres) by the grid's ±3,040 extent."""
    if units in KILOMETRES:
        return True
    if units and units not in METRES:
        return False
    outermost = float(np.max(np.abs(values))) if values.size else 0.0
    return abs(outermost - GRID_HALF_WIDTH / 1000) <= KM_EXTENT_TOLERANCE * GRID_HALF_WIDTH / 1000


def metres_axis_problem(name: str, values: np.ndarray, attrs: dict) -> str:
    """'' when ``values`` can be an axis of the EPSG:3031 ISMIP6 grid in metres, else why not."""
    units = _units(attrs)
    values = np.asarray(values, dtype="float64")
    if units not in METRES:
        return f"{name} units {attrs.get('units')!r}, not metres"
    if values.size < 2 or not np.all(np.isfinite(values)):
        return f"{name} has {values.size} values, not all finite"
    steps = np.diff(values)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        return f"{name} is not monotonic"
    outermost = float(np.max(np.abs(values)))
    if outermost > (1 + KM_EXTENT_TOLERANCE) * GRID_HALF_WIDTH or outermost < GRID_HALF_WIDTH / 2:
        return f"{name} reaches ±{outermost:,.0f} m, not the ±{GRID_HALF_WIDTH:,.0f} m EPSG:3031 grid"
    return ""


class KilometreGrid:
    """Scale x/y (and their bounds) written in kilometres to metres.

    Real files: x/y from −3040 to 3040 (km), listed in issue 22 among the quirks the predecessor
    (englacial/ismip-indexing) met (the file is not named there), while the ``grid_mapping`` is
    EPSG:3031, whose unit is the metre: stored
    as they were, every map lands 1000 times too small. An axis counts as km by its ``units``
    (``km``), or, when its units are absent or say metres, by the ISMIP6 grid's ±3,040 extent.
    """

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        for name in ("x", "y"):
            if name not in ds.variables or ds[name].ndim != 1:
                continue
            values = np.asarray(ds[name].values, dtype="float64")
            if not np.all(np.isfinite(values)) or not in_kilometres(values, _units(ds[name].attrs)):
                continue
            metres = values * 1000.0
            standard = standard_axis(values.size)
            if standard is not None and np.allclose(metres, standard, rtol=0, atol=SNAP_METRES):
                # km written with a few digits: the exact standard axis, so the view (views.py, which
                # groups fields by their x/y bytes) sees the same grid as the partition's metre files.
                metres = standard
            bounds = ds[name].attrs.get("bounds")
            for var_name in [name] + ([bounds] if bounds and bounds in ds.variables else []):
                var = ds[var_name]
                attrs = dict(var.attrs) | {"units": "m"}
                scaled = metres if var_name == name else np.asarray(var.values, dtype="float64") * 1000.0
                replacement = {var_name: (var.dims, scaled, attrs)}
                ds = ds.assign_coords(replacement) if var_name in ds.coords else ds.assign(replacement)
                ds[var_name].encoding = {}
            report.quirk("grid_xy_km")
        return ds
