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

from ismip6_assets.core.locations import Location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.redact import redact
from ismip6_assets.core.store import BRANCH
from ismip6_assets.core.store_state import read_partition_state

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
    note: str = ""  # e.g. "synthetic sample data, not model output", from the data's own attributes

    def markdown(self) -> str:
        """A markdown image with the PNG inline as a data URI (what Dagster's metadata renders)."""
        note = f" · **{self.note}**" if self.note else ""
        return f"![{self.variable} of {self.group}, time index {self.time_index}]({data_uri(self.png)})\n\n`{self.group}` · {self.time_label}{note}"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def is_map(ds: xr.Dataset, variable: str) -> bool:
    """A (time, y, x) field: one time slice of it is a 2-D map."""
    dims = ds[variable].dims
    return len(dims) == 3 and dims[0] == "time" and set(dims[1:]) == {"y", "x"}


def open_group(repo: icechunk.Repository, group: str, branch: str = BRANCH, session: icechunk.Session | None = None) -> xr.Dataset:
    # chunks=None: lazy arrays without Dask, whose scheduler set-up (and import of distributed)
    # buys nothing here: one slice is read either way.
    return xr.open_zarr((session or repo.readonly_session(branch=branch)).store, group=group, consolidated=False, decode_times=False, chunks=None)


def read_slice(repo: icechunk.Repository, group: str, variable: str, time_index: int = 0) -> xr.DataArray:
    """One time slice of `variable`, its chunks fetched through the store's virtual references."""
    ds = open_group(repo, group)
    return ds[variable].isel(time=time_index).load()


def stored_variables(repo: icechunk.Repository, partition: PartitionKey, branch: str = BRANCH, session: icechunk.Session | None = None) -> list[str]:
    """The variable groups the store holds for `partition` on the branch head, or in `session` (empty if none)."""
    return sorted(read_partition_state(repo, partition, branch, session=session).groups)


def choose_variable(
    repo: icechunk.Repository, partition: PartitionKey, stored: list[str] | None = None, session: icechunk.Session | None = None
) -> tuple[str, xr.Dataset] | None:
    """The stored variable to show and its opened group: the first preferred one that is a map, else any map."""
    stored = stored_variables(repo, partition, session=session) if stored is None else stored
    ordered = [v for v in PREFERRED_VARIABLES if v in stored] + [v for v in stored if v not in PREFERRED_VARIABLES]
    for variable in ordered:
        ds = open_group(repo, partition.variable_group(variable), session=session)
        if variable in ds and is_map(ds, variable):
            return variable, ds
    return None


# Viridis at 17 evenly spaced stops (matplotlib's table); interpolated to the palette's colours.
VIRIDIS_STOPS = "440154 48186a 472d7b 424086 3b528b 33638d 2c728e 26828e 21918c 1fa088 28ae80 3fbc73 5ec962 84d44b addc30 d8e219 fde725".split()
TITLE_PX = 14


def _palette(colors: int) -> np.ndarray:
    stops = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in VIRIDIS_STOPS], dtype=float)
    at = np.linspace(0, 1, colors)
    return np.stack([np.interp(at, np.linspace(0, 1, len(stops)), stops[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def render_png(values: np.ndarray, title: str = "", size_px: int = SIZE_PX, colors: int = 64, footer: str = "") -> bytes:
    """A small PNG (`size_px` square, a viridis palette of `colors`) of a 2-D array, south at the
    bottom; NaN is left white. Pillow only: matplotlib is slow to import and to draw, for a picture
    this plain."""
    from PIL import Image, ImageDraw, ImageFont

    finite = np.isfinite(values)
    vmin, vmax = np.nanpercentile(values, [2, 98]) if finite.any() else (0.0, 1.0)
    scaled = (np.clip(values, vmin, vmax) - vmin) / ((vmax - vmin) or 1.0)
    index = np.where(finite, np.round(np.nan_to_num(scaled) * (colors - 1)), colors).astype(np.uint8)  # `colors` = blank
    palette = np.vstack([_palette(colors), [[255, 255, 255]]])
    top, bottom = (TITLE_PX if title else 0), (TITLE_PX if footer else 0)
    ny, nx = index.shape
    scale = min(size_px / nx, (size_px - top - bottom) / ny)
    width, height = max(1, round(nx * scale)), max(1, round(ny * scale))
    field = Image.fromarray(index[::-1], mode="P").resize((width, height), Image.Resampling.NEAREST)
    image = Image.new("P", (size_px, size_px), colors)
    image.putpalette(palette.flatten().tolist())
    image.paste(field, ((size_px - width) // 2, top + (size_px - top - bottom - height) // 2))
    if title:
        ImageDraw.Draw(image).text((size_px // 2, 1), title, fill=0, anchor="ma", font=ImageFont.load_default(size=9))
    if footer:  # said in the picture too: a PNG gets shared without its caption
        ImageDraw.Draw(image).text((size_px // 2, size_px - 1), footer, fill=0, anchor="md", font=ImageFont.load_default(size=9))
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


def partition_preview(
    repo: icechunk.Repository, partition: PartitionKey, time_index: int = 0, stored: list[str] | None = None, session: icechunk.Session | None = None
) -> Preview | None:
    """A PNG of one time slice of one 2-D variable of `partition`, read through the store.

    None when the store holds no map for the partition. Raises when a chunk reference does not
    resolve (source file gone or rewritten): that is what a preview is for. `stored`: the partition's
    stored variables when the caller has already read them; `session`: read there, not on the branch head.
    """
    chosen = choose_variable(repo, partition, stored, session=session)
    if chosen is None:
        return None
    variable, ds = chosen
    group = partition.variable_group(variable)
    n_times = ds.sizes.get("time", 1)
    index = min(max(time_index, 0), n_times - 1)
    values = ds[variable].isel(time=index).load()
    units = values.attrs.get("units", "")
    time_label = f"time index {index} of {n_times}" + (f", {_date(ds, index)}" if "time" in ds else "")
    title = f"{partition} {variable}" + (f" [{units}]" if units else "")
    note = SYNTHETIC_NOTE if is_synthetic(ds) else ""
    png = render_png(np.asarray(values.values, dtype="float64"), title, footer=note)
    return Preview(group=group, variable=variable, time_index=index, png=png, time_label=time_label, note=note)


SYNTHETIC_NOTE = "synthetic sample data, not model output"


def is_synthetic(ds: xr.Dataset) -> bool:
    """The data says it is synthetic (the sample archive writes so in ``source``/``comment``)."""
    return any("synthetic" in str(ds.attrs.get(k, "")).lower() for k in ("source", "title", "comment"))


def open_snippet(store: Location, source: Location, group: str, variable: str, selection: str = "isel(time=0)") -> str:
    """Python a person can paste as is to open `group` of this store with icechunk and xarray.

    It prints the mean of ``ds[variable].{selection}`` (e.g. ``sel(time="2100")`` for a view; empty:
    the whole variable). Holds locations only, never credentials: GCS reads use the reader's own environment.
    """
    storage, credentials = store.storage_code(), source.chunk_credentials_code()
    # One argument a line (at most 72 columns but paths): the UI shows metadata code in a narrow pane and clips long lines.
    selection = f".{selection}" if selection else ""
    return redact(
        "import icechunk\n"
        "import xarray as xr\n"
        "\n"
        f"source = {source.prefix_url!r}\n"
        "repo = icechunk.Repository.open(\n"
        f"    {storage},\n"
        "    authorize_virtual_chunk_access=icechunk.containers_credentials(\n"
        f"        {{source: {credentials}}}\n"
        "    ),\n"
        ")\n"
        "ds = xr.open_zarr(\n"
        f"    repo.readonly_session({BRANCH!r}).store,\n"
        f"    group={group!r},\n"
        "    consolidated=False,\n"
        ")\n"
        "print(ds)\n"
        "# reads chunks through the store's virtual references:\n"
        f"print(ds[{variable!r}]{selection}.mean().values)\n"
    )
