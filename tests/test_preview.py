"""Preview images are read back through the Icechunk store, so they show what the store holds."""

from __future__ import annotations

import io

import icechunk
import numpy as np
import pytest
import xarray as xr
import zarr
from PIL import Image

from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.preview import SIZE_PX, partition_preview, read_slice, render_png

KEY = "AWI/PISM1/exp05"
PARTITION = PartitionKey.parse(KEY)
LITHK = "Projection-AIS/AWI/PISM1/exp05/lithk_AIS_AWI_PISM1_exp05.nc"


@pytest.fixture
def committed(run_committed):
    return run_committed(KEY)


def png_image(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(png))


def test_slice_read_through_the_store_equals_the_source(committed, archive_dir):
    values = read_slice(committed, PARTITION.variable_group("lithk"), "lithk", time_index=1)
    with xr.open_dataset(archive_dir / LITHK) as source:
        np.testing.assert_array_equal(values.values, source["lithk"].isel(time=1).values)


def test_partition_preview_is_a_small_png_of_a_thickness_map(committed):
    preview = partition_preview(committed, PARTITION, time_index=1)

    assert (preview.variable, preview.group, preview.time_index) == ("lithk", "AWI_PISM1/exp05/lithk", 1)
    assert "2017-01-01" in preview.time_label  # the second yearly snapshot (the end of 2016), in the file's own calendar
    assert "synthetic" in preview.note and "synthetic" in preview.markdown()  # the sample archive says what it is
    image = png_image(preview.png)
    assert image.size == (SIZE_PX, SIZE_PX)
    assert len(preview.png) < 40_000  # inline in metadata: keep it small
    assert len(image.convert("RGB").getcolors(maxcolors=100_000)) > 8  # a map, not a blank square
    assert preview.markdown().startswith("![lithk of AWI_PISM1/exp05/lithk") and "(data:image/png;base64," in preview.markdown()


def test_preview_fails_when_the_chunk_references_do_not_resolve(committed, archive_dir):
    (archive_dir / LITHK).unlink()  # the store's refs point at this file
    # The read of the chunk through the store fails naming the missing source file; any other
    # error (a bug in the preview itself) is not this test passing.
    with pytest.raises(icechunk.StorageError, match=r"error fetching virtual reference: .*lithk_AIS_AWI_PISM1_exp05\.nc not found"):
        partition_preview(committed, PARTITION)


def test_preview_shows_only_what_the_store_holds(committed, archive_dir):
    session = committed.writable_session("main")
    del zarr.open_group(session.store, mode="a")[PARTITION.variable_group("lithk")]
    session.commit("delete a group by hand")

    preview = partition_preview(committed, PARTITION)
    assert preview.variable == "orog"  # the source lithk file is still there: the store decides

    session = committed.writable_session("main")
    for variable in ("orog", "acabf"):
        del zarr.open_group(session.store, mode="a")[PARTITION.variable_group(variable)]
    session.commit("leave only the time series lim")
    assert partition_preview(committed, PARTITION) is None


def test_render_png_leaves_nan_out_of_the_colour_scale():
    values = np.full((50, 50), np.nan)
    values[10:40, 10:40] = np.linspace(0, 1, 900).reshape(30, 30)
    image = png_image(render_png(values, "t")).convert("RGB")
    assert image.size == (SIZE_PX, SIZE_PX)
    corner, centre = image.getpixel((SIZE_PX // 8, SIZE_PX // 2)), image.getpixel((SIZE_PX // 2, SIZE_PX // 2))
    assert corner != centre  # NaN is not drawn in the colour of a value
