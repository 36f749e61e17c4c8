"""The synthetic sample archive is believable over time: its sea-level numbers, measured the ISMIP6 way.

Sea-level contribution as Seroussi et al. (2020) compute it (../shared/ismip6-facts.md, "Sea-level
contribution"): ice volume above floatation from the 2D fields of the files written, the control run's
drift removed, 362.5 Gt of ice above floatation a mm. The area-distortion factor af2 (a few % on
EPSG:3031) is left out here: pyproj is not a dependency, and the bounds below are far wider than that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ismip6_assets.core.sample_archive import RHO_ICE, RHO_SEA, SAMPLE_EXPERIMENTS, file_name, grid, ice_sheet
from tests.conftest import N_TIMES

OCEAN_AREA = 3.625e14  # m2
CELL_AREA = float(grid()[1] - grid()[0]) ** 2


def lithk_of(archive: Path, institution: str, model: str, experiment: str) -> np.ndarray:
    (exp,) = [e for e in SAMPLE_EXPERIMENTS if (e.institution, e.model, e.experiment) == (institution, model, experiment)]
    path = archive / "Projection-AIS" / institution / model / experiment / file_name(exp, "lithk")
    with xr.open_dataset(path) as ds:
        return ds["lithk"].values.astype("float64")


def ivaf(lithk: np.ndarray, seed: str) -> np.ndarray:
    """m3 of ice above floatation per step: hf = lithk + rho_w/rho_i min(topg, 0) on grounded ice
    (hf > 0 is the sample's flotation criterion, as its sftgrf), missing = no ice. The bedrock is
    the model's (static) one."""
    topg = ice_sheet(seed, np.array([2015]))["topg"][0]
    hf = np.nan_to_num(lithk) + RHO_SEA / RHO_ICE * np.minimum(topg, 0.0)
    return np.where(hf > 0, hf, 0.0).sum(axis=(1, 2)) * CELL_AREA


def sle_mm(volume: np.ndarray) -> np.ndarray:
    """mm of sea level of a change of ice above floatation (m3), positive = rise."""
    return -volume * RHO_ICE / (1000 * OCEAN_AREA) * 1000


def test_a_control_run_drifts_a_few_tenths_of_a_mm_a_year_not_metres(pristine_archive):
    for institution, model in (("AWI", "PISM1"),):
        drift = np.diff(sle_mm(ivaf(lithk_of(pristine_archive, institution, model, "ctrl_proj_std"), f"{institution}/{model}")))
        assert len(drift) == N_TIMES - 1 and (np.abs(drift) < 1.0).all(), drift  # mm a year


def test_a_projection_adds_a_little_sea_level_each_year_on_top_of_the_drift(pristine_archive):
    seed = "AWI/PISM1"
    control = ivaf(lithk_of(pristine_archive, "AWI", "PISM1", "ctrl_proj_std"), seed)
    projection = ivaf(lithk_of(pristine_archive, "AWI", "PISM1", "exp05"), seed)
    change = projection - control  # dV(t): the drift removed, matched by time
    sle = sle_mm(change - change[0])
    yearly = np.diff(sle)
    assert ((yearly > 0.01) & (yearly < 2.0)).all(), sle  # a rise, of tenths of a mm a year
    assert (np.diff(yearly) > 0).all(), sle  # and growing
    # Sea level over the century, from the same ice sheet: tens of mm, not metres.
    century = [ivaf(ice_sheet(seed, np.arange(2015, 2101), forcing=f)["lithk"], seed) for f in (0.0, 1.0)]
    by_2100 = sle_mm((century[1] - century[0]) - (century[1] - century[0])[0])[-1]
    assert 5 < by_2100 < 60, by_2100


def test_the_historical_run_ends_where_the_projections_start(pristine_archive):
    """hist_std's last state (Jan 1 2015) is the state exp05 starts from: its first state (end of
    2015) differs from it by one year of exp05's own change, as its second differs from its first."""
    seed = "ILTS_PIK/SICOPOLIS1"
    hist = lithk_of(pristine_archive, "ILTS_PIK", "SICOPOLIS1", "hist_std")
    projection = lithk_of(pristine_archive, "ILTS_PIK", "SICOPOLIS1", "exp05")
    assert np.nanmax(np.abs(projection[0] - hist[-1])) < 0.1  # m of ice: one year's change, nowhere more
    jump = sle_mm(ivaf(projection[:1], seed) - ivaf(hist[-1:], seed))[0]
    next_year = sle_mm(ivaf(projection[1:2], seed) - ivaf(projection[:1], seed))[0]
    assert abs(jump) < 2.0 and abs(jump - next_year) < 0.2 * abs(next_year) + 0.01, (jump, next_year)
    hist_yearly = np.diff(sle_mm(ivaf(hist, seed)))
    assert (np.abs(hist_yearly) < 1.0).all(), hist_yearly
