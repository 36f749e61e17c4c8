import pytest

from ismip6_assets.core.paths import InvalidName, PartitionKey, parse_archive_path


@pytest.mark.parametrize(
    "relpath, institution, model, experiment, variable",
    [
        ("Projection-AIS/ILTS_PIK/SICOPOLIS1/hist_std/lithk_AIS_ILTS_PIK_SICOPOLIS_hist_std.nc", "ILTS_PIK", "SICOPOLIS1", "hist_std", "lithk"),
        ("Projection-AIS/ULB/fETISh_16km/expA6/xvelbase_AIS_ULB_fETISh_expA6.nc", "ULB", "fETISh_16km", "expA6", "xvelbase"),
        ("Projection-AIS/UCIJPL/ISSM/exp13/exp13acabf_AIS_UCIJPL_ISSM_exp13.nc", "UCIJPL", "ISSM", "exp13", "acabf"),
        ("Projection-AIS/AWI/PISM1/ctrl_proj_std/lim_AIS_AWI_PISM1_ctrl_proj_std.nc", "AWI", "PISM1", "ctrl_proj_std", "lim"),
    ],
)
def test_irregular_names_parse(relpath, institution, model, experiment, variable):
    parsed = parse_archive_path(relpath)
    assert (parsed.partition.institution, parsed.partition.model, parsed.partition.experiment) == (institution, model, experiment)
    assert parsed.variable == variable
    assert parsed.group == f"{institution}_{model}/{experiment}/{variable}"


@pytest.mark.parametrize(
    "relpath",
    [
        "Projection-AIS/AWI/PISM1/exp05/lithk_AIS_AWI_PISM1_exp05.nc4",  # other suffix
        "Projection-AIS/AWI/PISM1/exp05/extra/lithk_AIS_AWI_PISM1_exp05.nc",  # one folder too deep
        "Projection-GIS/AWI/PISM1/exp05/lithk_GIS_AWI_PISM1_exp05.nc",  # other top folder
        "Projection-AIS/AWI/PISM1/lithk_AIS_AWI_PISM1_exp05.nc",  # one folder short
        "Projection-AIS/AWI/PISM1/exp05/README.nc",  # no _AIS_ part
        "Projection-AIS/../PISM1/exp05/lithk_AIS_AWI_PISM1_exp05.nc",  # path traversal
        "Projection-AIS/AWI/PISM\u0031\u0338/exp05/lithk_AIS_AWI_PISM1_exp05.nc",  # Unicode look-alike
        "Projection-AIS/AWI/PI\nSM1/exp05/lithk_AIS_AWI_PISM1_exp05.nc",  # control character
        "Projection-AIS/A__WI/PISM1/exp05/lithk_AIS_AWI_PISM1_exp05.nc",  # '__' collides with the group joiner
    ],
)
def test_paths_that_do_not_fit_are_rejected(relpath):
    with pytest.raises(InvalidName):
        parse_archive_path(relpath)


def test_partition_key_round_trips_with_underscored_institution():
    key = PartitionKey("ILTS_PIK", "SICOPOLIS1", "hist_std")
    assert str(key) == "ILTS_PIK/SICOPOLIS1/hist_std"
    assert PartitionKey.parse(str(key)) == key
    assert key.group == "ILTS_PIK_SICOPOLIS1/hist_std"


@pytest.mark.parametrize("key", ["ILTS_PIK_SICOPOLIS1_hist_std", "a/b", "a/b/c/d", "../b/c", "a/b/", "a/ b/c"])
def test_invalid_partition_keys_are_rejected(key):
    with pytest.raises(InvalidName):
        PartitionKey.parse(key)
