"""Does a stored group's time decode to dates, and are its x/y the EPSG:3031 grid in metres?

The deep check's second look at the groups of its sample (`verify.verify_partition`): the chunk
comparison proves the data are the source's, not that a reader can place them. A group stored with
a raw garbage time (as the store held before issue 22: NaN, 1e219 and no units) or with x/y in km
reads the source's values exactly and was OK. Time, x and y are loaded inline: a few small reads
from the store, no source read.
"""

from __future__ import annotations

import cftime
import numpy as np
import zarr
from zarr.core.sync import sync

from ismip6_assets.core.fixes.grid_units import metres_axis_problem
from ismip6_assets.core.fixes.time_units import PLAUSIBLE_YEARS


def time_problem(values: np.ndarray, attrs: dict) -> str:
    """'' when ``values`` with CF ``attrs`` decode to dates inside `PLAUSIBLE_YEARS`, else why not."""
    values = np.asarray(values, dtype="float64")
    units = attrs.get("units")
    if not units:
        shown = ", ".join(f"{v:g}" for v in values[:4])
        return f"time has no units (values {shown}{', …' if values.size > 4 else ''}): it does not decode"
    if not np.all(np.isfinite(values)):
        return f"time has {int((~np.isfinite(values)).sum())} values that are not finite"
    try:
        dates = cftime.num2date(values, str(units), str(attrs.get("calendar", "standard")), only_use_cftime_datetimes=True)
    except (ValueError, OverflowError) as exc:
        return f"time does not decode with units {units!r}: {exc}"
    years = [d.year for d in np.ravel(dates)]
    if years and not (PLAUSIBLE_YEARS[0] <= min(years) and max(years) <= PLAUSIBLE_YEARS[1]):
        return f"time decodes to years {min(years)}–{max(years)}, outside {PLAUSIBLE_YEARS[0]}–{PLAUSIBLE_YEARS[1]}"
    return ""


def member_names(store, group: str) -> list[str]:
    """The names of a stored group's members, sorted, from one listing (no member's metadata parsed:
    zarr's ``Group.arrays()`` reads and parses every member's)."""

    async def listed() -> list[str]:
        return sorted([name async for name in store.list_dir(group) if name != "zarr.json"])

    return sync(listed())


def coordinate_findings(store, group: str) -> list[dict]:
    """Findings (category ``bad_time`` / ``bad_grid``, item the group) for one stored variable group."""
    names = set(member_names(store, group))
    arrays = {n: zarr.open_array(store, path=f"{group}/{n}", mode="r", zarr_format=3) for n in ("time", "x", "y") if n in names}
    findings = []
    if "time" in arrays:
        time = arrays["time"]
        problem = time_problem(np.asarray(time[...]), dict(time.attrs))
        if problem:
            findings.append({"category": "bad_time", "item": group, "reason": problem})
    problems = [metres_axis_problem(n, np.asarray(arrays[n][...]), dict(arrays[n].attrs)) for n in ("x", "y") if n in arrays]
    if any(problems):
        findings.append({"category": "bad_grid", "item": group, "reason": "; ".join(p for p in problems if p)})
    return findings
