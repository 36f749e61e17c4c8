"""The catalog beside the store (catalog.py, stac.py, the store_catalog asset) after real runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pystac
import pytest
import xarray as xr

from ismip6_assets.core.catalog import COLUMNS, build_catalog, catalog_path, read_catalog
from ismip6_assets.core.locations import parse_location
from ismip6_assets.cli.runs import reconcile_archive, run_archive
from ismip6_assets.core.sample_archive import sample_dataset, write_netcdf
from ismip6_assets.core.store import open_repository
from ismip6_assets.core.store_state import read_store_state
from tests.conftest import N_TIMES, open_group, open_plain_repo
from tests.test_readme import snippets as readme_snippets



def stored_rows(store_dir: Path, archive_dir: Path) -> pd.DataFrame:
    """What the store holds, read group by group with plain xarray: the catalog's expected content."""
    repo = open_plain_repo(store_dir, archive_dir)
    out = []
    for key, state in read_store_state(repo).items():
        inst, model, exp = key.split("/")
        for variable, group in state.groups.items():
            ds = open_group(repo, group.group)
            out.append({"institution": inst, "model": model, "experiment": exp, "variable": variable, "group": group.group,
                        "units": ds[variable].attrs.get("units"), "standard_name": ds[variable].attrs.get("standard_name"),
                        "n_times": ds.sizes.get("time", 0), "source_url": group.url, "fingerprint": group.fingerprint})
    return pd.DataFrame(out).sort_values(["institution", "model", "experiment", "variable"], ignore_index=True)


def assert_catalog_is_the_store(store_dir: Path, archive_dir: Path) -> pd.DataFrame:
    catalog = pd.read_parquet(store_dir / "catalog" / "catalog.parquet")
    assert list(catalog.columns) == COLUMNS
    expected = stored_rows(store_dir, archive_dir)
    got = catalog[expected.columns].astype(object).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected.astype(object), check_dtype=False)
    # The incremental refreshes agree with a catalog built from nothing.
    store, source = parse_location(str(store_dir), "store"), parse_location(str(archive_dir), "source")
    shutil.copy(store_dir / "catalog" / "catalog.parquet", store_dir / "saved.parquet")
    os.remove(store_dir / "catalog" / "catalog.parquet")
    full, _, reread = build_catalog(open_repository(store, source), store)
    shutil.move(store_dir / "saved.parquet", store_dir / "catalog" / "catalog.parquet")
    assert build_catalog(open_repository(store, source), store)[2] is None  # the saved one is at the head: nothing to write
    pd.testing.assert_frame_equal(full, read_catalog(store)[0])
    assert len(reread) == catalog.groupby(["institution", "model", "experiment"]).ngroups
    return catalog


def build_demo(root: Path, pristine_archive: Path, instance):
    """`make demo`'s layout under a folder that stands in for the repo root, run through Dagster."""
    from ismip6_assets.defs.resources import ArchiveResource

    archive_dir, store_dir = root / "data" / "sample-archive", root / "data" / "store"
    shutil.copytree(pristine_archive, archive_dir)
    archive = ArchiveResource(source_url=str(archive_dir), store_url=str(store_dir))
    assert {o.status for o in run_archive(archive, instance, in_process=True)} == {"OK"}
    return archive, archive_dir, store_dir


@pytest.fixture
def demo(tmp_path, pristine_archive, instance):
    return build_demo(tmp_path, pristine_archive, instance)


@pytest.fixture(scope="module")
def demo_read_only(tmp_path_factory, pristine_archive):
    """One demo for the tests that only read it."""
    import dagster as dg

    with dg.instance_for_test() as instance:
        yield build_demo(tmp_path_factory.mktemp("demo"), pristine_archive, instance)


def test_catalog_equals_the_store_after_runs_a_deletion_and_a_refresh(demo, instance):
    archive, archive_dir, store_dir = demo
    catalog = assert_catalog_is_the_store(store_dir, archive_dir)
    lithk = catalog.set_index("group").loc["AWI_PISM1/exp05/lithk"]
    assert (lithk["variable_type"], lithk["units"], lithk["standard_name"]) == ("ST", "m", "land_ice_thickness")
    assert (lithk["first_year"], lithk["last_year"], lithk["n_times"], lithk["grid_km"], lithk["format"]) == (2015, 2015 + N_TIMES - 1, N_TIMES, 32, "netcdf4")
    assert lithk["view"] == "combined/AWI_PISM1/exp05"
    hist = catalog[(catalog["experiment"] == "hist_std") & (catalog["variable"] == "lithk")].iloc[0]
    assert hist["last_year"] == 2014 and hist["format"] == "netcdf3"  # the historical run ends where projections start

    # Each row carries its experiment's ISMIP6 protocol (ismip6-experiments.csv); empty where the protocol has none.
    protocol = ["experiment_kind", "scenario", "aogcm", "ocean_melt", "control_experiment", "tier"]
    by_experiment = catalog.drop_duplicates("experiment").set_index("experiment")[protocol].astype(object)
    by_experiment = by_experiment.where(by_experiment.notna(), None)
    assert by_experiment.loc["exp05"].tolist() == ["projection", "RCP 8.5", "NorESM1-M", "standard", "ctrl_proj_std", 1]
    assert by_experiment.loc["expA1"].tolist() == ["projection", "RCP 8.5", "HadGEM2-ES", "open", "ctrl_proj_open", 2]
    assert by_experiment.loc["ctrl_proj_std"].tolist() == ["control", None, None, "standard", None, 1]
    assert by_experiment.loc["hist_std"].tolist() == ["historical", None, None, "standard", None, 1]
    assert (catalog.groupby("experiment")[protocol].nunique(dropna=False) == 1).all().all()  # one protocol a partition
    assert catalog["tier"].dtype == "Int64"

    # A deletion and a rewritten file, then `ismip6 run`'s refresh.
    (archive_dir / "Projection-AIS/DOE/MALI/expA1/orog_AIS_DOE_MALI_expA1.nc").unlink()
    rewritten = archive_dir / "Projection-AIS/AWI/PISM1/exp05/acabf_AIS_AWI_PISM1_exp05.nc"
    write_netcdf(sample_dataset("acabf", "rewritten", N_TIMES), rewritten, "chunked")
    before = os.stat(store_dir / "catalog" / "catalog.parquet").st_mtime_ns
    reconcile_archive(archive)  # read-only: the catalog is not touched
    assert os.stat(store_dir / "catalog" / "catalog.parquet").st_mtime_ns == before
    run_archive(archive, instance, in_process=True)
    catalog = assert_catalog_is_the_store(store_dir, archive_dir)
    assert "DOE_MALI/expA1/orog" not in set(catalog["group"])
    acabf = catalog.set_index("group").loc["AWI_PISM1/exp05/acabf"]
    assert acabf["fingerprint"] != lithk["fingerprint"] and acabf["fingerprint"] == open_group(
        open_plain_repo(store_dir, archive_dir), "AWI_PISM1/exp05/acabf").attrs["ismip6_source_fingerprint"]


@pytest.fixture
def offline_stac_validator():
    """pystac's validator with the xarray-assets schema it would fetch, from tests/support (no network here)."""
    from pystac.extensions.xarray_assets import SCHEMA_URI
    from pystac.validation import JsonSchemaSTACValidator, RegisteredValidator, set_validator

    validator = JsonSchemaSTACValidator()
    validator.schema_cache[SCHEMA_URI] = json.loads((Path(__file__).parent / "support" / "xarray_assets_schema.json").read_text())
    previous = RegisteredValidator._validator
    set_validator(validator)
    yield validator
    RegisteredValidator._validator = previous


def test_the_stac_collection_validates_and_each_item_opens_its_view(demo_read_only, offline_stac_validator):
    import icechunk
    from pystac.extensions.xarray_assets import XarrayAssetsExtension

    archive, archive_dir, store_dir = demo_read_only
    collection = pystac.Collection.from_file(str(store_dir / "catalog" / "stac" / "collection.json"))
    items = list(collection.get_items())
    assert collection.validate_all() == len(items) == 7  # offline: pystac's bundled schemas, the stand-in above and jsonschema
    item = collection.get_item("AWI_PISM1-exp05")
    assert item.properties["ismip6:experiment"] == "exp05" and item.properties["ismip6:experiment_kind"] == "projection"
    assert "ismip6:scenario" in item.properties and "lithk" in item.properties["ismip6:variables"]
    # Every extension whose fields an Item uses is declared, and validated through its schema.
    for each in items:
        assert each.stac_extensions == [XarrayAssetsExtension.get_schema_uri()] and XarrayAssetsExtension.has_extension(each)
    asset = item.assets["view"]
    assert asset.media_type == pystac.MediaType.VND_ZARR and asset.roles == ["data"]
    # The asset names the one prefix to authorize, and a reader that authorizes only that reads the view.
    prefixes = [c["url_prefix"] for c in asset.extra_fields["icechunk:virtual_chunk_containers"]]
    assert prefixes == ["file://" + str(archive_dir.resolve()) + "/"] and prefixes[0] in asset.description
    repo = icechunk.Repository.open(
        icechunk.local_filesystem_storage(str(store_dir)),
        authorize_virtual_chunk_access=icechunk.containers_credentials({prefixes[0]: icechunk.credentials.LocalFileSystemAccess}),
    )
    view = xr.open_zarr(repo.readonly_session("main").store, **XarrayAssetsExtension.ext(asset).open_kwargs)
    assert {"lithk", "orog", "acabf", "lim"} <= set(view.data_vars)
    assert float(view.lithk.isel(time=0).mean()) > 0  # its chunks read through the authorized prefix

    undeclared = item.to_dict(include_self_link=False) | {"stac_extensions": []}
    with pytest.raises(pystac.STACValidationError):  # xarray:open_kwargs without its extension declared
        pystac.validation.validate_dict(undeclared, extensions=[XarrayAssetsExtension.get_schema_uri()])


def test_readme_answers_which_models_ran_exp05_with_lithk_in_one_call(demo_read_only):
    archive, archive_dir, store_dir = demo_read_only
    root = store_dir.parents[1]
    outputs = []
    for code in readme_snippets("Find what the store holds"):
        proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    answer = outputs[0]
    assert "PISM1" in answer and "SICOPOLIS1" in answer and "2015" in answer and str(2015 + N_TIMES - 1) in answer
    assert "exp05" in outputs[1] and catalog_path(archive.store).exists()
