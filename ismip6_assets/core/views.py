"""Analysis-ready views: one dataset per model/experiment, every variable on ISMIP6 model years.

The view of a partition is the group ``combined/{INST}_{MODEL}/{EXP}`` (the path users of the
public englacial/ismip-indexing store know), written in the same commit as the partition's
variable groups. It holds each stored variable under its own name, on one ``time`` axis of model
years and the partition's ``x``/``y`` grid: one step a year, stamped Jul 1 with ``time_bnds``
[Jan 1 Y, Jan 1 Y+1] and an integer ``year`` coordinate, so ``ds.lithk.sel(time="2050")`` and
``ds.acabf.sel(time="2050")`` are the state at the end of 2050 and the flux over 2050, with no
alignment code. The axis is the sorted union of the years of the variables placed in it: a
variable left out adds no year (the fit is redone without it until every field fits).

- **Model year** of a time step: with time bounds, the year of the bounds' midpoint; otherwise an
  ST (state) variable's year is the year that ends at its stamp (Jan 1 Y+1 and Dec 31 Y are both
  year Y), any other variable's the year of its stamp (FL fluxes are stamped mid-year). The rule
  lives in fixes/model_years.py, which gives every variable group the same ``year`` and ``time_bnds``.
- **Same references, no bytes copied**: a field is the per-variable group's `ManifestArray`
  reindexed onto the year axis with VirtualiZarr's lazy alignment (each view chunk is one source
  chunk or missing). A year a variable does not have is a missing chunk, read as the array's
  ``fill_value``, which is NaN for floats. A time-only scalar series is stored inline, one chunk
  (its few numbers copied), when its values were decoded from the file's head as it was virtualized
  (series_values.py: the series written by this commit) or its chunks do not fit the axis; a series
  re-rendered from a stored group keeps its references. Any other field that does not fit is left
  out, as is a variable on another grid or one whose steps share a year: each with its reason in
  the group's ``ismip6_left_out`` attribute.
- **What it was built from**: ``ismip6_view_sources`` maps every variable considered to the
  fingerprint of its group, so `reconcile.store_diff` tells a stale view from the group documents
  alone (store_state.py reads them).

Pure: knows nothing of Dagster or of the store; reading stored groups and writing the view is `view_writer.py`.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import xarray as xr
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.utils import copy_and_replace_metadata
from zarr.codecs import BytesCodec
from zarr.core.group import GroupMetadata

from ismip6_assets.core.experiments import experiment_attributes
from ismip6_assets.core.fixes.grid import EPSG_3031_ATTRS, GRID_MAPPING_NAME
from ismip6_assets.core.fixes.model_years import TIME_BOUNDS, YEAR, YEAR_ATTRS, NoModelYears, days_since_2000, step_years, year_bounds
from ismip6_assets.core.fixes.time import TARGET_CALENDAR, TARGET_UNITS
from ismip6_assets.core.group_writer import RenderedGroup, metadata_document, render_coordinates
from ismip6_assets.core.paths import PartitionKey

VIEW_ROOT = "combined"
SOURCES_ATTR = "ismip6_view_sources"
VARIABLES_ATTR = "ismip6_view_variables"
LEFT_OUT_ATTR = "ismip6_left_out"
TIME_RULE_ATTR = "ismip6_time_rule"
INLINE_ATTR = "ismip6_view_inline"
YEARS_ATTR = "ismip6_view_years"  # [first, last], or absent when no variable has time
VARIABLE_YEARS_ATTR = "ismip6_view_variable_years"  # variable -> [first, last] of the years it has
TIME = "time"
TIME_RULE = (
    "time is the ISMIP6 model year Y, stamped Jul 1 of Y with time_bnds [Jan 1 Y, Jan 1 Y+1]. "
    "ST (state) variables: the snapshot that closes Y (a step stamped Jan 1 00:00 of Y+1 or Dec 31 of Y); "
    "FL (flux) variables: the mean over Y (the year of the stamp, or of the midpoint of the time bounds). "
    "The axis is the sorted union of the years of the variables in the view; a year a variable lacks reads as missing."
)


def view_group(partition: PartitionKey) -> str:
    return f"{VIEW_ROOT}/{partition.group}"


def experiment_of_view(path: str) -> str | None:
    """``combined/INST_MODEL/EXP[/...]`` -> ``INST_MODEL/EXP`` (the partition's group); None otherwise."""
    parts = path.strip("/").split("/")
    return "/".join(parts[1:3]) if parts[0] == VIEW_ROOT and len(parts) >= 3 else None


class NotViewable(ValueError):
    """Why a variable is left out of the view (one line a human reads)."""


@dataclass
class ViewField:
    """One variable group as the view needs it: its data array's metadata and references, and the
    raw values and attributes of its ``time`` (and bounds), ``x`` and ``y`` coordinates."""

    variable: str
    fingerprint: str
    url: str
    metadata: object  # zarr ArrayV3Metadata, attributes encoded, as stored
    manifest: ChunkManifest
    coords: dict[str, tuple[np.ndarray, dict]] = field(default_factory=dict)
    values: np.ndarray | None = None  # a time-only series' raw values, when in hand (VirtualizedFile.series)

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.metadata.dimension_names or ())


@dataclass
class Placement:
    """A field of the view: virtual (references) or inline (values to read, then copied)."""

    variable: str
    metadata: object
    manifest: ChunkManifest | None = None  # None: inline
    source_positions: np.ndarray | None = None  # inline: the source step of each year, -1 where none


@dataclass
class ViewPlan:
    partition: PartitionKey
    years: np.ndarray  # int, strictly increasing: the union of the placed variables' years; empty when none has time
    fields: dict[str, Placement] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # every variable considered -> fingerprint
    variable_years: dict[str, tuple[int, int]] = field(default_factory=dict)  # fields with time: first, last
    x: tuple[np.ndarray, dict] | None = None
    y: tuple[np.ndarray, dict] | None = None

    @property
    def inline(self) -> list[str]:
        return sorted(v for v, p in self.fields.items() if p.manifest is None)


def model_years(f: ViewField) -> np.ndarray:
    """The model year of each time step of `f` (fixes/model_years.py, the rule every variable group's
    ``year`` follows too); raises `NotViewable`."""
    if "time" not in f.coords:
        raise NotViewable("has a time dimension but no time coordinate")
    time, attrs = f.coords["time"]
    bounds = f.coords.get("bounds")
    try:
        return step_years(f.variable, time, attrs, None if bounds is None else bounds[0])
    except NoModelYears as exc:
        raise NotViewable(str(exc)) from None


def _grid_key(f: ViewField):
    if "x" not in f.dims and "y" not in f.dims:
        return None
    if "x" not in f.coords or "y" not in f.coords:
        raise NotViewable("has x/y dimensions but no x/y coordinates")
    return (f.coords["x"][0].tobytes(), f.coords["y"][0].tobytes())


def _grid_text(f: ViewField) -> str:
    return f"{len(f.coords['y'][0])}×{len(f.coords['x'][0])}"


def plan_view(partition: PartitionKey, fields: list[ViewField], not_viewable: dict[str, str] | None = None, sources: dict[str, str] | None = None) -> ViewPlan:
    """Where each stored variable goes in the view, and which are left out and why. Pure.

    `not_viewable`: variables already known to be left out, with their reasons; `sources`: the
    fingerprint of every variable group considered (default: those of `fields`)."""
    left_out = dict(not_viewable or {})
    sources = dict(sorted((sources or {f.variable: f.fingerprint for f in fields}).items()))
    years_of: dict[str, np.ndarray] = {}
    grids = {}
    for f in fields:
        try:
            if "time" in f.dims:
                years = model_years(f)
                if not len(years):
                    raise NotViewable("has no time steps")
                repeated = [int(y) for y, n in Counter(years.tolist()).items() if n > 1]
                if repeated:
                    raise NotViewable(f"{len(years)} steps fall in {len(set(years.tolist()))} model years ({repeated[0]} has more than one)")
                years_of[f.variable] = years
            grids[f.variable] = _grid_key(f)
        except NotViewable as exc:
            left_out[f.variable] = str(exc)
    usable = [f for f in fields if f.variable not in left_out]
    # The partition's grid is the one most of its fields are on; others are left out, not regridded.
    counts = Counter(grids[f.variable] for f in usable if grids[f.variable] is not None)
    grid = max(counts, key=lambda k: counts[k]) if counts else None
    reference = next((f for f in usable if grids[f.variable] == grid), None) if grid else None
    for f in usable:
        if grids[f.variable] is not None and grids[f.variable] != grid:
            left_out[f.variable] = f"grid {_grid_text(f)} differs from the view's {_grid_text(reference)}"
    usable = [f for f in usable if f.variable not in left_out]
    while True:  # the axis holds only the years of fields placed on it: refit without those that do not fit
        years = _union([years_of[f.variable] for f in usable if f.variable in years_of])
        placed, misfits = {}, {}
        for f in usable:
            try:
                placed[f.variable] = _place(f, years_of.get(f.variable), years)
            except NotViewable as exc:
                misfits[f.variable] = str(exc)
        if not misfits:
            break
        left_out |= misfits
        usable = [f for f in usable if f.variable not in misfits]
    plan = ViewPlan(partition, years, fields=placed, left_out=left_out, sources=sources)
    if reference is not None:
        plan.x, plan.y = reference.coords["x"], reference.coords["y"]
    plan.variable_years = {v: (int(y.min()), int(y.max())) for v, y in years_of.items() if v in placed}
    return plan


def _union(years: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(years)).astype("int64") if years else np.array([], dtype="int64")


def _fill_value(f: ViewField, has_missing: bool):
    """NaN for floats, so a year without data reads as missing; otherwise the declared fill."""
    if f.metadata.dtype.to_native_dtype().kind in "fc":
        return float("nan")
    if has_missing and "_FillValue" not in (f.metadata.attributes or {}):
        raise NotViewable(f"{f.metadata.dtype.to_native_dtype()} values without _FillValue: its missing years could not read as missing")
    return f.metadata.fill_value


def _place(f: ViewField, years: np.ndarray | None, axis: np.ndarray) -> Placement:
    dims = f.dims
    if years is None:  # no time dimension: the field as it is
        return Placement(f.variable, dataclasses.replace(f.metadata, fill_value=_fill_value(f, False)), f.manifest)
    positions = np.full(len(axis), -1, dtype="int64")
    positions[np.searchsorted(axis, years)] = np.arange(len(years))
    view_dims = dims
    fill_value = _fill_value(f, bool((positions < 0).any()))
    if dims == ("time",) and f.values is not None:  # its values in hand: one chunk, not a reference a step
        metadata = _inline_metadata(f, len(axis), fill_value)
        return Placement(f.variable, dataclasses.replace(metadata, dimension_names=view_dims), None, positions)
    try:
        metadata, manifest = _shift(f, years, axis, fill_value=fill_value, dimension_names=view_dims)
    except NotImplementedError:
        if dims != ("time",):
            chunk = f.metadata.chunks[dims.index("time")]
            raise NotViewable(f"time chunks of {chunk} steps do not line up with the view's years") from None
        metadata = _inline_metadata(f, len(axis), fill_value)
        return Placement(f.variable, dataclasses.replace(metadata, dimension_names=view_dims), None, positions)
    return Placement(f.variable, metadata, manifest)


def _shift(f: ViewField, years: np.ndarray, axis: np.ndarray, **changes):
    """The field's (metadata, manifest) on the view's axis; NotImplementedError when a view chunk
    would be part of a source chunk.

    Years that land on consecutive places of the axis (the archive's rule) are a whole-chunk offset
    along time, done here with numpy (the general path costs far more a variable on files of many
    steps). Anything else goes through xarray's ``reindex``, which VirtualiZarr implements lazily
    with the same rule. `changes` are applied to the returned metadata.
    """
    t = f.dims.index("time")
    places = np.searchsorted(axis, years)
    chunk, start = f.metadata.chunks[t], int(places[0])
    if not np.array_equal(places, np.arange(start, start + len(places))):
        marr = ManifestArray(metadata=f.metadata, chunkmanifest=f.manifest)
        ds = xr.Dataset({"v": xr.Variable(f.dims, marr)}, coords={"time": ("time", places)})
        reindexed = ds.reindex(time=np.arange(len(axis)))["v"].data
        return dataclasses.replace(reindexed.metadata, **changes), reindexed.manifest
    # The source's last chunk may be partial only where the view's is too: at the axis' end.
    if start % chunk or (len(years) % chunk and places[-1] != len(axis) - 1):
        raise NotImplementedError("view chunks would split source chunks")
    if start == 0 and len(years) == len(axis):
        return dataclasses.replace(f.metadata, **changes), f.manifest
    grid = list(f.manifest.shape_chunk_grid)
    before, grid[t] = start // chunk, -(-len(axis) // chunk)
    paths = np.full(grid, "", dtype=np.dtypes.StringDType())
    offsets, lengths = np.zeros(grid, dtype=np.uint64), np.zeros(grid, dtype=np.uint64)
    into = tuple(slice(before, before + f.manifest.shape_chunk_grid[t]) if i == t else slice(None) for i in range(len(grid)))
    paths[into], offsets[into], lengths[into] = f.manifest._paths, f.manifest._offsets, f.manifest._lengths
    manifest = ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths, validate_paths=False)
    shape = tuple(len(axis) if i == t else n for i, n in enumerate(f.metadata.shape))
    return dataclasses.replace(f.metadata, shape=shape, **changes), manifest


def _inline_metadata(f: ViewField, n_years: int, fill_value):
    """A 1-D inline array: one uncompressed chunk holding the series on the year axis."""
    resized = copy_and_replace_metadata(f.metadata, new_shape=[n_years], new_chunks=[n_years])
    return dataclasses.replace(resized, codecs=(BytesCodec(),), fill_value=fill_value)


def inline_chunk(placement: Placement, raw: np.ndarray) -> bytes:
    """The inline series' one chunk: the source's raw values per year, the fill value elsewhere."""
    dtype = placement.metadata.dtype.to_native_dtype()
    out = np.full(len(placement.source_positions), placement.metadata.fill_value, dtype=dtype)
    present = placement.source_positions >= 0
    out[present] = np.asarray(raw)[placement.source_positions[present]]
    return out.astype(dtype.newbyteorder("<")).tobytes()


def view_attributes(plan: ViewPlan) -> dict:
    p = plan.partition
    attrs = {"institution": p.institution, "model_name": p.model, "experiment": p.experiment} | experiment_attributes(p.experiment)
    attrs |= {
        "title": f"ISMIP6 Antarctic ice sheet: {p.model_group} {p.experiment}, every variable on model years",
        TIME_RULE_ATTR: TIME_RULE,
        VARIABLES_ATTR: sorted(plan.fields),
        LEFT_OUT_ATTR: dict(sorted(plan.left_out.items())),
        INLINE_ATTR: plan.inline,
        SOURCES_ATTR: dict(sorted(plan.sources.items())),
        VARIABLE_YEARS_ATTR: {v: list(y) for v, y in sorted(plan.variable_years.items())},
    }
    if len(plan.years):
        attrs[YEARS_ATTR] = [int(plan.years[0]), int(plan.years[-1])]
    return attrs


def year_axis(years: np.ndarray) -> dict[str, xr.Variable]:
    """The view's ``time`` (Jul 1 of each model year), its ``time_bnds`` and the integer ``year``.

    Values are days since 2000-01-01 on the proleptic Gregorian calendar, as the variable groups
    store them (fixes/time.py), so plain ``xr.open_zarr`` decodes them to dates.
    """
    time_attrs = {"units": TARGET_UNITS, "calendar": TARGET_CALENDAR, "standard_name": "time", "axis": "T", "bounds": TIME_BOUNDS,
                  "long_name": "ISMIP6 model year (stamped Jul 1; see ismip6_time_rule)"}
    return {
        TIME: xr.Variable((TIME,), days_since_2000(years, 7), time_attrs),
        TIME_BOUNDS: xr.Variable((TIME, "bnds"), year_bounds(years), {}),
        YEAR: xr.Variable((TIME,), years.astype("int32"), YEAR_ATTRS),
    }


def _coordinate_attrs(attrs: dict) -> dict:
    # Encoding keys stay behind: xarray's writer takes _FillValue only as encoding.
    return {k: v for k, v in attrs.items() if k not in ("_FillValue", "missing_value", "coordinates")}


def render_view(plan: ViewPlan, inline_values: dict[str, np.ndarray]) -> RenderedGroup:
    """The view's documents, inline chunks and references, for `group_writer.store_rendered`."""
    group = view_group(plan.partition)
    coords = {}
    if len(plan.years):
        coords |= year_axis(plan.years)
    if plan.x is not None:
        coords["x"] = xr.Variable(("x",), plan.x[0], _coordinate_attrs(plan.x[1]))
        coords["y"] = xr.Variable(("y",), plan.y[0], _coordinate_attrs(plan.y[1]))
    rendered = RenderedGroup(groups={}, arrays={}, chunks={}, manifests={})
    attrs = view_attributes(plan) | ({"coordinates": " ".join(coords)} if coords else {})
    rendered.groups[f"{group}/zarr.json"] = json.dumps(GroupMetadata(attributes=attrs).to_dict()).encode()
    inline = xr.Dataset(coords=coords)
    if any((p.metadata.attributes or {}).get("grid_mapping") == GRID_MAPPING_NAME for p in plan.fields.values()):
        inline[GRID_MAPPING_NAME] = xr.Variable((), np.int32(0), dict(EPSG_3031_ATTRS))  # as fixes/cf.py stores it
    if inline.variables:
        for key, data in render_coordinates(inline).items():
            (rendered.arrays if key.endswith("zarr.json") else rendered.chunks)[f"{group}/{key}"] = data
    for name, placement in plan.fields.items():
        rendered.arrays[f"{group}/{name}/zarr.json"] = metadata_document(placement.metadata)
        if placement.manifest is None:
            rendered.chunks[f"{group}/{name}/c/0"] = inline_chunk(placement, inline_values[name])
        else:
            rendered.manifests[f"{group}/{name}"] = placement.manifest
    return rendered


@dataclass
class ViewSummary:
    """What a stored view holds, from its group attributes (for metadata and `store_diff`)."""

    group: str
    variables: list[str]
    years: tuple[int, int] | None
    left_out: dict[str, str]
    inline: list[str]
    sources: dict[str, str]
    variable_years: dict[str, tuple[int, int]]

    @classmethod
    def from_attrs(cls, group: str, attrs) -> ViewSummary:
        years = attrs.get(YEARS_ATTR)
        return cls(
            group=group,
            variables=list(attrs.get(VARIABLES_ATTR, [])),
            years=(int(years[0]), int(years[1])) if years else None,
            left_out=dict(attrs.get(LEFT_OUT_ATTR, {})),
            inline=list(attrs.get(INLINE_ATTR, [])),
            sources=dict(attrs.get(SOURCES_ATTR, {})),
            variable_years={v: (int(y[0]), int(y[1])) for v, y in dict(attrs.get(VARIABLE_YEARS_ATTR, {})).items()},
        )
