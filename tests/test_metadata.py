"""Materialization metadata people read in the UI, produced by real runs on a sample archive."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import numpy as np
import pytest
import xarray as xr

from ismip6_assets.defs.assets.metadata import file_records
from ismip6_assets.definitions import ASSETS, CHECKS, build_resources
from ismip6_assets.core.index import list_archive
from ismip6_assets.core.locations import parse_location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.virtualize import virtualize_rows
from tests.conftest import open_plain_repo

KEY = "AWI/PISM1/exp05"
PLOTTED = ("files", "failures", "groups_written", "groups_removed", "partition_groups", "chunk_refs_written")


def materialize(archive, instance, key: str) -> dict[str, dict]:
    """Run the partition through Dagster; return each asset's materialization metadata (values)."""
    if key not in instance.get_dynamic_partitions("model_experiment"):
        instance.add_dynamic_partitions("model_experiment", [key])
    result = dg.materialize([*ASSETS, *CHECKS], partition_key=key, instance=instance, resources=build_resources(archive))
    assert result.success
    out = {}
    for node in ("file_index", "virtual_dataset", "icechunk_commit"):
        (materialization,) = result.asset_materializations_for_node(node)
        out[node] = dict(materialization.metadata)
    return out


def test_each_files_format_comes_from_the_one_read_of_its_header(archive_dir):
    source = parse_location(str(archive_dir), "source")
    bogus = archive_dir / "Projection-AIS/DOE/MALI/expA1/topg_AIS_DOE_MALI_expA1.nc"
    bogus.write_text("not a netcdf file at all")
    formats, reasons = {}, {}
    for key in ("AWI/PISM1/exp05", "ILTS_PIK/SICOPOLIS1/hist_std", "ULB/fETISh_16km/expA6", "DOE/MALI/expA1"):
        rows = list_archive(source, PartitionKey.parse(key)).rows
        assert [r["variable"] for r in file_records(rows)] == list(rows["variable"])
        result = virtualize_rows(rows.to_dict("records"), source)
        formats |= {(key, f.variable): f.file_format for f in result.files}
        reasons |= {(key, f.variable): f.error for f in result.failures}

    assert formats[("AWI/PISM1/exp05", "lithk")] == "netcdf4"
    assert {v for (k, _), v in formats.items() if k == "ILTS_PIK/SICOPOLIS1/hist_std"} == {"netcdf3"}
    assert reasons[("ULB/fETISh_16km/expA6", "xvelbase")] == "file is empty (0 bytes)"  # the skip-listed 0-byte file
    assert reasons[("DOE/MALI/expA1", "topg")].startswith("not a NetCDF file: starts with b'not a ne'")


def test_file_index_table_carries_variable_size_and_fingerprint_and_virtual_dataset_the_formats(archive, instance):
    metadata = materialize(archive, instance, KEY)
    table = metadata["file_index"]["file_table"]
    columns = [c.name for c in table.schema.columns]
    assert columns[:3] == ["variable", "size", "fingerprint"]
    records = {r.data["variable"]: r.data for r in table.records}
    assert set(records) == {"lithk", "orog", "acabf", "lim"}
    assert all(r["size"] > 0 and r["fingerprint"].startswith("mtime:") for r in records.values())
    assert metadata["virtual_dataset"]["formats"].value == {"netcdf4": 4}
    assert {r.data["format"] for r in metadata["virtual_dataset"]["files"].records} == {"netcdf4"}


def test_virtual_dataset_metadata_counts_chunk_refs_and_loaded_coordinates(archive, instance):
    metadata = materialize(archive, instance, KEY)["virtual_dataset"]
    records = {r.data["variable"]: r.data for r in metadata["files"].records}
    # The grid mapping (a scalar written by fixes/cf.py) and the model years (fixes/model_years.py)
    # are stored inline with the coordinates.
    assert set(records["lithk"]["loaded_coordinates"].split(", ")) == {"x", "y", "time", "year", "time_bnds", "polar_stereographic"}
    assert set(records["lim"]["loaded_coordinates"].split(", ")) == {"time", "year", "time_bnds"}
    assert metadata["loaded_coordinates"].value == 3 * 6 + 3
    assert metadata["chunk_refs"].value == sum(r["chunk_refs"] for r in records.values()) > 0


def test_commit_metadata_says_what_changed_and_stays_plottable_on_a_rerun(archive, archive_dir, store_dir, instance):
    first = materialize(archive, instance, KEY)["icechunk_commit"]
    head = next(iter(open_plain_repo(store_dir, archive_dir).ancestry(branch="main"))).id
    assert first["commit_id"].value == head == first["branch_head"].value
    assert first["commit_message"].value.startswith("Added 4 datasets")
    assert first["groups_added"].value.splitlines() == [f"- `AWI_PISM1/exp05/{v}`" for v in ("acabf", "lim", "lithk", "orog")]
    assert first["groups_written"].value == 4 and first["chunk_refs_written"].value > 0
    assert "failures_log" not in first  # left out, not shown blank, when nothing failed

    second = materialize(archive, instance, KEY)["icechunk_commit"]
    assert second["commit_id"].value == "" and second["branch_head"].value == head
    assert "nothing to commit" in second["commit_message"].value
    # The UI plots a key across materializations only while it stays a number.
    for key in PLOTTED:
        assert isinstance(first[key], dg.IntMetadataValue) and isinstance(second[key], dg.IntMetadataValue), key
    assert second["groups_written"].value == 0 and second["partition_groups"].value == 4
    assert "data:image/png;base64," in second["preview"].value  # every materialization shows the partition
    # The view: its group, model years and variables, on every materialization.
    for metadata in (first, second):
        assert metadata["view"].value == "combined/AWI_PISM1/exp05" and metadata["view_years"].value == "2015-2017"
        assert metadata["view_variables"].value == 4 and metadata["view_variable_names"].value == "acabf, lim, lithk, orog"


def test_failure_table_lists_the_bad_file(archive, archive_dir, instance):
    bad = archive_dir / "Projection-AIS/AWI/PISM1/exp05/orog_AIS_AWI_PISM1_exp05.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # truncated HDF5
    metadata = materialize(archive, instance, KEY)["icechunk_commit"]
    (record,) = [r.data for r in metadata["failure_table"].records]
    assert record["file"] == bad.name and record["url"] == f"file://{bad}" and record["error"]
    assert metadata["failures"].value == 1 and metadata["groups_written"].value == 3
    assert metadata["failures_log"].value.endswith(".json")


@pytest.mark.slow
def test_open_with_xarray_snippet_runs_as_pasted(archive, archive_dir, instance, tmp_path):
    metadata = materialize(archive, instance, KEY)["icechunk_commit"]
    text = metadata["open_with_xarray"].value
    assert text.startswith("```python\n") and text.endswith("```")
    code = text.removeprefix("```python\n").removesuffix("```")
    # Wrapped for the UI's narrow pane: only a line holding a path is longer than 72 columns.
    assert max(len(line) for line in code.splitlines() if str(tmp_path) not in line) <= 72, code

    # Pasted into a fresh interpreter elsewhere: no project code, no environment settings.
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    printed_mean = float(proc.stdout.strip().splitlines()[-1])
    # It opens the view and reads lithk in its last model year: the source's last step (ST on Jan 1 2018 = end of 2017).
    assert "group='combined/AWI_PISM1/exp05'" in code and 'sel(time="2017")' in code
    with xr.open_dataset(archive_dir / "Projection-AIS/AWI/PISM1/exp05/lithk_AIS_AWI_PISM1_exp05.nc") as source:
        expected = float(source["lithk"].isel(time=-1).mean())
    assert np.isclose(printed_mean, expected, rtol=1e-6)
