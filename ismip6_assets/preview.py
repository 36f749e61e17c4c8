"""Small preview images of what the store holds, read back *through* the Icechunk store.

Reading a slice through the repository resolves its virtual chunk references against the source
archive, so a preview that renders is evidence that the refs of that group work; a preview read
from the NetCDF file directly would prove nothing about the store. No Dagster here.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import icechunk
import numpy as np
import xarray as xr

from ismip6_assets.locations import Location
from ismip6_assets.paths import PartitionKey
from ismip6_assets.redact import redact
from ismip6_assets.store import BRANCH, read_partition_state

# Thickness reads best as a picture of the ice sheet; then other 2-D state variables.
PREFERRED_VARIABLES = ("lithk", "orog", "topg", "base", "sftgif", "acabf")
SIZE_PX = 200


@dataclass
class Preview:
    group: str
    variable: str
    time_index: int
    png: bytes
    time_label: str = ""

    def markdown(self) -> str:
        """A markdown image with the PNG inline as a data URI (what Dagster's metadata renders)."""
        return f"![{self.variable} of {self.group}, time index {self.time_index}]({data_uri(self.png)})\n\n`{self.group}` · {self.time_label}"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def is_map(ds: xr.Dataset, variable: str) -> bool:
    """A (time, y, x) field: one time slice of it is a 2-D map."""
    dims = ds[variable].dims
    return len(dims) == 3 and dims[0] == "time" and set(dims[1:]) == {"y", "x"}


def open_group(repo: icechunk.Repository, group: str, branch: str = BRANCH) -> xr.Dataset:
    return xr.open_zarr(repo.readonly_session(branch=branch).store, group=group, consolidated=False, decode_times=False)


def read_slice(repo: icechunk.Repository, group: str, variable: str, time_index: int = 0) -> xr.DataArray:
    """One time slice of `variable`, its chunks fetched through the store's virtual references."""
    ds = open_group(repo, group)
    return ds[variable].isel(time=time_index).load()


def stored_variables(repo: icechunk.Repository, partition: PartitionKey, branch: str = BRANCH) -> list[str]:
    """The variable groups the store holds for `partition` on the branch head (empty if none)."""
    return sorted(read_partition_state(repo, partition, branch).groups)


def choose_variable(repo: icechunk.Repository, partition: PartitionKey) -> str | None:
    """The stored variable to show: the first preferred one that is a map, else any map."""
    stored = stored_variables(repo, partition)
    ordered = [v for v in PREFERRED_VARIABLES if v in stored] + [v for v in stored if v not in PREFERRED_VARIABLES]
    for variable in ordered:
        ds = open_group(repo, partition.variable_group(variable))
        if variable in ds and is_map(ds, variable):
            return variable
    return None


def render_png(values: np.ndarray, title: str = "", size_px: int = SIZE_PX, colors: int = 64) -> bytes:
    """A small PNG (`size_px` square, a palette of `colors`) of a 2-D array; NaN is left blank."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from PIL import Image

    dpi = 100
    fig = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86 if title else 0.96))
    finite = np.isfinite(values)
    vmin, vmax = (np.nanpercentile(values, [2, 98]) if finite.any() else (0.0, 1.0))
    ax.imshow(np.ma.masked_invalid(values), origin="lower", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=7, y=0.97)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    image = Image.fromarray(rgba[..., :3]).quantize(colors=colors)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _date(ds: xr.Dataset, index: int) -> str:
    """The slice's time as a date, in the file's own calendar; the raw number if it won't decode."""
    time = ds["time"]
    try:
        decoded = xr.coders.CFDatetimeCoder(use_cftime=True).decode(time.variable, name="time")
        return decoded.values[index].strftime("%Y-%m-%d")
    except Exception:  # noqa: BLE001 - a label, not data: fall back to the number and its units
        return f"time = {float(time.values[index]):g} {time.attrs.get('units', '')}".rstrip()


def partition_preview(repo: icechunk.Repository, partition: PartitionKey, time_index: int = 0) -> Preview | None:
    """A PNG of one time slice of one 2-D variable of `partition`, read through the store.

    None when the store holds no map for the partition. Raises when a chunk reference does not
    resolve (source file gone or rewritten): that is what a preview is for.
    """
    variable = choose_variable(repo, partition)
    if variable is None:
        return None
    group = partition.variable_group(variable)
    ds = open_group(repo, group)
    n_times = ds.sizes.get("time", 1)
    index = min(max(time_index, 0), n_times - 1)
    values = read_slice(repo, group, variable, index)
    units = values.attrs.get("units", "")
    time_label = f"time index {index} of {n_times}" + (f", {_date(ds, index)}" if "time" in ds else "")
    title = f"{partition} {variable}" + (f" [{units}]" if units else "")
    return Preview(group=group, variable=variable, time_index=index, png=render_png(np.asarray(values.values, dtype="float64"), title), time_label=time_label)


def open_snippet(store: Location, source: Location, group: str, variable: str) -> str:
    """Python a person can paste as is to open `group` of this store with icechunk and xarray.

    Holds locations only, never credentials: GCS reads use the reader's own environment.
    """
    if store.scheme == "file":
        storage = f"icechunk.local_filesystem_storage({store.path!r})"
    else:
        storage = f"icechunk.gcs_storage(bucket={store.bucket!r}, prefix={store.path!r}, from_env=True)"
    if source.scheme == "file":
        credentials = "icechunk.credentials.LocalFileSystemAccess"
    else:
        credentials = "icechunk.gcs_credentials(anonymous=True)"
    return redact(
        "import icechunk\n"
        "import xarray as xr\n"
        "\n"
        "repo = icechunk.Repository.open(\n"
        f"    {storage},\n"
        f"    authorize_virtual_chunk_access=icechunk.containers_credentials({{{source.prefix_url!r}: {credentials}}}),\n"
        ")\n"
        f"ds = xr.open_zarr(repo.readonly_session({BRANCH!r}).store, group={group!r}, consolidated=False)\n"
        f"print(ds[{variable!r}])\n"
        f"print(ds[{variable!r}].isel(time=0).mean().values)  # reads chunks through the store's virtual references\n"
    )
