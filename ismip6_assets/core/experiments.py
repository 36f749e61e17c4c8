"""ISMIP6 protocol facts per experiment (``ismip6-experiments.csv``, packaged beside this module).

One row per experiment folder name: kind (historical / control / projection), scenario, forcing
AOGCM, ocean-melt approach, ocean forcing, ice-shelf collapse, tier and the control run to subtract,
as catalogued by the englacial/ismip-indexing project. The views carry them as group attributes so
a reader filters experiments without a lookup table of their own.
"""

from __future__ import annotations

import csv
import io
from functools import lru_cache
from importlib.resources import files

CSV_NAME = "ismip6-experiments.csv"
# Column -> attribute name in the store; ``experiment`` itself is already an attribute.
ATTRIBUTE_NAMES = {
    "kind": "experiment_kind",
    "scenario": "scenario",
    "aogcm": "forcing_aogcm",
    "ocean_melt": "ocean_melt",
    "ocean_forcing": "ocean_forcing",
    "ice_shelf_collapse": "ice_shelf_collapse",
    "tier": "tier",
    "control": "control_experiment",
}


def _value(column: str, text: str):
    if column == "ice_shelf_collapse":
        return text == "true"
    if column == "tier":
        return int(text)
    return text


@lru_cache(maxsize=1)
def experiment_table() -> dict[str, dict]:
    """Attributes by experiment name; empty cells are left out (a control run has no scenario)."""
    text = files("ismip6_assets.core").joinpath(CSV_NAME).read_text(encoding="utf-8")
    table = {}
    for row in csv.DictReader(io.StringIO(text)):
        table[row["experiment"]] = {ATTRIBUTE_NAMES[c]: _value(c, v) for c, v in row.items() if c in ATTRIBUTE_NAMES and v != ""}
    return table


def experiment_attributes(experiment: str) -> dict:
    """The protocol attributes of `experiment`, or ``{}`` for a name the table does not know."""
    return dict(experiment_table().get(experiment, {}))
