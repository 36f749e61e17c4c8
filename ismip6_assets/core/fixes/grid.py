"""Give files without usable x/y the standard ISMIP6 EPSG:3031 grid.

Some groups wrote no x/y coordinates (dims ``nx``/``ny``) or x/y with repeated values. Every ISMIP6
AIS grid has cell centres from −3,040,000 m to +3,040,000 m, so the grid size alone tells the
coordinates. The spatial dims are found from the data variables' shapes, never by variable name:
the upstream script looked up the uncorrected name and so skipped every UCIJPL file
(``exp13acabf`` holds ``acabf``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ismip6_assets.core.fixes import FixReport

GRID_HALF_WIDTH = 3_040_000.0
# Grid spacing (m) of the standard grids: 191 → 32 km, 381 → 16 km, 761 → 8 km, 1521 → 4 km.
STANDARD_RESOLUTIONS = (32_000.0, 16_000.0, 8_000.0, 4_000.0)
SNAP_TOLERANCE = 0.10
GRID_MAPPING_NAME = "polar_stereographic"
# EPSG:3031 as WKT2 (pyproj's ``CRS.from_epsg(3031).to_wkt()``, PROJ 9), written out so that no
# PROJ database is needed: rioxarray, GDAL and pyproj's ``CRS.from_cf`` read the CRS from it.
EPSG_3031_WKT = (
    'PROJCRS["WGS 84 / Antarctic Polar Stereographic",BASEGEOGCRS["WGS 84",ENSEMBLE["World Geodetic System 1984 ensemble",'
    'MEMBER["World Geodetic System 1984 (Transit)"],MEMBER["World Geodetic System 1984 (G730)"],'
    'MEMBER["World Geodetic System 1984 (G873)"],MEMBER["World Geodetic System 1984 (G1150)"],'
    'MEMBER["World Geodetic System 1984 (G1674)"],MEMBER["World Geodetic System 1984 (G1762)"],'
    'MEMBER["World Geodetic System 1984 (G2139)"],MEMBER["World Geodetic System 1984 (G2296)"],'
    'ELLIPSOID["WGS 84",6378137,298.257223563,LENGTHUNIT["metre",1]],ENSEMBLEACCURACY[2.0]],'
    'PRIMEM["Greenwich",0,ANGLEUNIT["degree",0.0174532925199433]],ID["EPSG",4326]],'
    'CONVERSION["Antarctic Polar Stereographic",METHOD["Polar Stereographic (variant B)",ID["EPSG",9829]],'
    'PARAMETER["Latitude of standard parallel",-71,ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8832]],'
    'PARAMETER["Longitude of origin",0,ANGLEUNIT["degree",0.0174532925199433],ID["EPSG",8833]],'
    'PARAMETER["False easting",0,LENGTHUNIT["metre",1],ID["EPSG",8806]],'
    'PARAMETER["False northing",0,LENGTHUNIT["metre",1],ID["EPSG",8807]]],CS[Cartesian,2],'
    'AXIS["(E)",north,MERIDIAN[90,ANGLEUNIT["degree",0.0174532925199433]],ORDER[1],LENGTHUNIT["metre",1]],'
    'AXIS["(N)",north,MERIDIAN[0,ANGLEUNIT["degree",0.0174532925199433]],ORDER[2],LENGTHUNIT["metre",1]],'
    'USAGE[SCOPE["Antarctic Digital Database and small scale topographic mapping."],AREA["Antarctica."],'
    'BBOX[-90,-180,-60,180]],ID["EPSG",3031]]'
)
# CF grid mapping of EPSG:3031 (WGS 84 / Antarctic Polar Stereographic).
EPSG_3031_ATTRS = {
    "grid_mapping_name": "polar_stereographic",
    "straight_vertical_longitude_from_pole": 0.0,
    "latitude_of_projection_origin": -90.0,
    "standard_parallel": -71.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "semi_major_axis": 6378137.0,
    "inverse_flattening": 298.257223563,
    "epsg_code": "EPSG:3031",
    "crs_wkt": EPSG_3031_WKT,
}


def standard_axis(n: int) -> np.ndarray | None:
    """Cell centres of an ``n``-point axis of the standard grid, or None when no resolution fits.

    The spacing ``6,080,000 / (n - 1)`` snaps to the nearest standard resolution within 10 %; the
    axis is centred on the pole, so the standard sizes give exactly ``linspace(-3040000, 3040000, n)``.
    """
    if n < 2:
        return None
    spacing = 2 * GRID_HALF_WIDTH / (n - 1)
    best = min(STANDARD_RESOLUTIONS, key=lambda r: abs(spacing - r) / r)
    if abs(spacing - best) / best > SNAP_TOLERANCE:
        return None
    if abs(spacing - best) < 1e-6 * best:
        return np.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, n)
    return (np.arange(n) - (n - 1) / 2) * best


def spatial_dims(ds: xr.Dataset) -> tuple[str, str] | None:
    """The (y, x) dims: the last two dims of the fields (data variables of two or more dims, not bounds)."""
    bounds = {v.attrs.get("bounds") for v in ds.variables.values()}
    fields = [v for n, v in ds.data_vars.items() if v.ndim >= 2 and n not in bounds and not n.endswith(("_bnds", "_bounds"))]
    found = {v.dims[-2:] for v in fields}
    return found.pop() if len(found) == 1 else None


def _usable(ds: xr.Dataset, name: str, dim: str) -> bool:
    if name not in ds.variables or ds[name].dims != (dim,):
        return False
    values = np.asarray(ds[name].values, dtype="float64")
    steps = np.diff(values)
    return bool(np.all(np.isfinite(values)) and (np.all(steps > 0) or np.all(steps < 0)))


class StandardGrid:
    """Derive EPSG:3031 x/y where they are missing or duplicated; leave correct x/y untouched."""

    def __call__(self, ds: xr.Dataset, report: FixReport) -> xr.Dataset:
        dims = spatial_dims(ds)
        if dims is None:
            return ds
        (ydim, xdim), (yname, xname) = dims, ("y", "x")
        if (ydim, xdim) == (yname, xname) and _usable(ds, "y", "y") and _usable(ds, "x", "x"):
            return ds
        x, y = standard_axis(ds.sizes[xdim]), standard_axis(ds.sizes[ydim])
        if x is None or y is None:
            size = f"{ds.sizes[ydim]}x{ds.sizes[xdim]}"
            report.warnings.append(f"grid {size} has no usable x/y and matches no standard ISMIP6 grid")
            return ds
        had = "duplicated" if xname in ds.variables or yname in ds.variables else "missing"
        # Old coordinate variables (and index variables named like the dims) go before the rename.
        stale = [n for n in {xname, yname, xdim, ydim} if n in ds.variables]
        ds = ds.drop_vars(stale).rename_dims({d: n for d, n in ((ydim, yname), (xdim, xname)) if d != n})
        ds = ds.assign_coords(
            x=("x", x, {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"}),
            y=("y", y, {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"}),
        )
        ds[GRID_MAPPING_NAME] = xr.Variable((), np.int32(0), dict(EPSG_3031_ATTRS))
        for name in ds.data_vars:
            if ds.variables[name].dims[-2:] == ("y", "x"):
                ds.variables[name].attrs["grid_mapping"] = GRID_MAPPING_NAME
        report.quirk(f"grid_{had}_xy")
        return ds
