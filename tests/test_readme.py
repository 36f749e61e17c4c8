"""README snippets run as written, in a fresh interpreter, against what `make demo` leaves behind.

`make demo` writes the sample archive under ``data/sample-archive`` and runs every partition into
``data/store``; here the same is built under a temporary folder that stands in for the repo root
(the same sample archive, committed through the library pipeline the assets use), and each snippet
runs there with no project code importable.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ismip6_assets.core.sample_archive import write_sample_archive
from tests.test_views import commit_archive

README = Path(__file__).resolve().parents[1] / "README.md"


def snippets(section: str) -> list[str]:
    """The ```python blocks of one ``## `` section of the README."""
    text = README.read_text()
    start = text.index(f"\n## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_sample_archive(root / "data" / "sample-archive")  # `ismip6 sample-archive`'s defaults, as make demo runs it
    commit_archive(root / "data" / "sample-archive", root / "data" / "store")
    return root


def run(code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_view_snippet_computes_grounded_ice_volume_per_model_year(demo):
    (code,) = snippets("Analysis-ready views")
    out = run(code, demo)
    printed = {int(m[0]): float(m[1]) for m in re.findall(r"^(\d{4})\s+(\S+)$", out, re.M)}

    # The same from the source files alone: ST stamped Jan 1 of Y+1 is model year Y.
    folder = demo / "data/sample-archive/Projection-AIS/AWI/PISM1/ctrl_proj_std"
    lithk = xr.open_dataset(folder / "lithk_AIS_AWI_PISM1_ctrl_proj_std.nc").lithk
    sftgrf = xr.open_dataset(folder / "sftgrf_AIS_AWI_PISM1_ctrl_proj_std.nc").sftgrf
    cell_area = 32_000.0 * 32_000.0
    expected = {t.year - 1: float((lithk.isel(time=i) * sftgrf.isel(time=i)).sum()) * cell_area for i, t in enumerate(lithk.time.values)}
    assert sorted(printed) == sorted(expected) == list(range(2015, 2020))
    for year, volume in expected.items():
        assert volume > 0 and np.isclose(printed[year], volume, rtol=1e-5), (year, printed[year], volume)


def test_the_read_snippet_prints_the_mean_of_the_first_time_step(demo):
    (code,) = snippets("Read the store from xarray")
    printed = float(run(code, demo).split()[0])
    path = demo / "data/sample-archive/Projection-AIS/ILTS_PIK/SICOPOLIS1/hist_std/lithk_AIS_ILTS_PIK_SICOPOLIS_hist_std.nc"
    with xr.open_dataset(path) as source:
        assert np.isclose(printed, float(source.lithk.isel(time=0).mean()), rtol=1e-6)


@pytest.fixture(scope="module")
def sea_level_demo(tmp_path_factory) -> Path:
    """A store whose sea level is computed: the test archive built from Seroussi et al. (2020)'s numbers."""
    from ismip6_assets.core.locations import parse_location
    from ismip6_assets.core.sea_level_store import refresh_sea_level
    from ismip6_assets.core.store import open_repository
    from tests.sea_level_support import write_real_numbers_archive

    root = tmp_path_factory.mktemp("sea_level_demo")
    write_real_numbers_archive(root / "archive")
    commit_archive(root / "archive", root / "data" / "store")
    store = parse_location(str(root / "data" / "store"), "store")
    refresh_sea_level(open_repository(store, parse_location(str(root / "archive"), "source")), store)
    return root


def test_the_sea_level_snippet_prints_the_2100_numbers_and_the_ensemble_median(sea_level_demo):
    (code,) = snippets("Sea level")
    out = run(code, sea_level_demo)
    printed = {m[0]: float(m[1]) for m in re.findall(r"^\s*(JPL1|NCAR)\s+\S+\s+ctrl_proj_std\s+(\S+)$", out, re.M)}
    assert abs(printed["JPL1"] - (-11.2)) <= 0.05, out
    median = float(re.search(r"^median (\S+) mm$", out, re.M)[1])
    assert np.isclose(median, np.median(list(printed.values())), atol=1e-4), out


def test_the_demo_has_an_empty_sea_level_table_with_every_partitions_reason(demo):
    """What the README says of `make demo`: no sample partition has lithk, topg, sftgif and sftgrf."""
    from ismip6_assets.core.locations import parse_location
    from ismip6_assets.core.sea_level_store import refresh_sea_level
    from ismip6_assets.core.store import open_repository

    store = parse_location(str(demo / "data" / "store"), "store")
    result = refresh_sea_level(open_repository(store, parse_location(str(demo / "data" / "sample-archive"), "source")), store)
    assert result.table.empty and len(result.left_out) == 7
    assert result.left_out["AWI/PISM1/ctrl_proj_std"] == "no topg"
