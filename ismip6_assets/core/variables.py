"""The 37 ISMIP6 AIS output variables: type, CF standard name, long name and units.

From the ISMIP6 Antarctic output request (Nowicki et al. 2020, ISMIP6-Projections-Antarctica
output table): ST variables are state snapshots at the end of each year, FL variables yearly-mean
fluxes. `fixes/cf.py` puts ``standard_name``/``long_name`` (and ``units`` where a file has none)
on each stored field from this table; the sample archive writes its units.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ismip6Variable:
    name: str
    type: str  # "ST" state snapshot or "FL" yearly flux
    standard_name: str
    long_name: str
    units: str

    @property
    def is_map(self) -> bool:
        """A (time, y, x) field; the others are scalar time series of the whole ice sheet."""
        return self.name not in SCALAR_VARIABLES


# name: (type, standard_name, long_name, units)
_TABLE = {
    "lithk": ("ST", "land_ice_thickness", "Ice thickness", "m"),
    "orog": ("ST", "surface_altitude", "Surface elevation", "m"),
    "base": ("ST", "base_altitude", "Base elevation", "m"),
    "topg": ("ST", "bedrock_altitude", "Bedrock elevation", "m"),
    "hfgeoubed": ("FL", "upward_geothermal_heat_flux_at_ground_level_in_land_ice", "Geothermal heat flux", "W m-2"),
    "acabf": ("FL", "land_ice_surface_specific_mass_balance_flux", "Surface mass balance flux", "kg m-2 s-1"),
    "libmassbfgr": ("FL", "land_ice_basal_specific_mass_balance_flux", "Basal mass balance flux beneath grounded ice", "kg m-2 s-1"),
    "libmassbffl": ("FL", "land_ice_basal_specific_mass_balance_flux", "Basal mass balance flux beneath floating ice", "kg m-2 s-1"),
    "dlithkdt": ("FL", "tendency_of_land_ice_thickness", "Ice thickness imbalance", "m s-1"),
    "xvelsurf": ("ST", "land_ice_surface_x_velocity", "Surface velocity in x", "m s-1"),
    "yvelsurf": ("ST", "land_ice_surface_y_velocity", "Surface velocity in y", "m s-1"),
    "zvelsurf": ("ST", "land_ice_surface_upward_velocity", "Surface velocity in z", "m s-1"),
    "xvelbase": ("ST", "land_ice_basal_x_velocity", "Basal velocity in x", "m s-1"),
    "yvelbase": ("ST", "land_ice_basal_y_velocity", "Basal velocity in y", "m s-1"),
    "zvelbase": ("ST", "land_ice_basal_upward_velocity", "Basal velocity in z", "m s-1"),
    "xvelmean": ("ST", "land_ice_vertical_mean_x_velocity", "Mean velocity in x", "m s-1"),
    "yvelmean": ("ST", "land_ice_vertical_mean_y_velocity", "Mean velocity in y", "m s-1"),
    "litemptop": ("ST", "temperature_at_top_of_ice_sheet_model", "Surface temperature", "K"),
    "litempbotgr": ("ST", "temperature_at_base_of_ice_sheet_model", "Basal temperature beneath grounded ice sheet", "K"),
    "litempbotfl": ("ST", "temperature_at_base_of_ice_sheet_model", "Basal temperature beneath floating ice shelf", "K"),
    "strbasemag": ("ST", "land_ice_basal_drag", "Basal drag", "Pa"),
    "licalvf": ("FL", "land_ice_specific_mass_flux_due_to_calving", "Calving flux", "kg m-2 s-1"),
    "lifmassbf": ("FL", "land_ice_specific_mass_flux_due_to_calving_and_ice_front_melting", "Ice front melt and calving flux", "kg m-2 s-1"),
    "ligroundf": ("FL", "land_ice_specific_mass_flux_at_grounding_line", "Grounding line flux", "kg m-2 s-1"),
    "sftgif": ("ST", "land_ice_area_fraction", "Land ice area fraction", "1"),
    "sftgrf": ("ST", "grounded_ice_sheet_area_fraction", "Grounded ice sheet area fraction", "1"),
    "sftflf": ("ST", "floating_ice_shelf_area_fraction", "Floating ice shelf area fraction", "1"),
    "lim": ("ST", "land_ice_mass", "Total ice mass", "kg"),
    "limnsw": ("ST", "land_ice_mass_not_displacing_sea_water", "Mass above floatation", "kg"),
    "iareagr": ("ST", "grounded_ice_sheet_area", "Grounded ice area", "m2"),
    "iareafl": ("ST", "floating_ice_shelf_area", "Floating ice area", "m2"),
    "tendacabf": ("FL", "tendency_of_land_ice_mass_due_to_surface_mass_balance", "Total SMB flux", "kg s-1"),
    "tendlibmassbf": ("FL", "tendency_of_land_ice_mass_due_to_basal_mass_balance", "Total BMB flux", "kg s-1"),
    "tendlibmassbffl": ("FL", "tendency_of_land_ice_mass_due_to_basal_mass_balance", "Total BMB flux beneath floating ice", "kg s-1"),
    "tendlicalvf": ("FL", "tendency_of_land_ice_mass_due_to_calving", "Total calving flux", "kg s-1"),
    "tendlifmassbf": ("FL", "tendency_of_land_ice_mass_due_to_calving_and_ice_front_melting", "Total calving and ice front melting flux", "kg s-1"),
    "tendligroundf": ("FL", "tendency_of_grounded_ice_mass", "Total grounding line flux", "kg s-1"),
}
SCALAR_VARIABLES = frozenset(
    "lim limnsw iareagr iareafl tendacabf tendlibmassbf tendlibmassbffl tendlicalvf tendlifmassbf tendligroundf".split()
)
VARIABLES: dict[str, Ismip6Variable] = {name: Ismip6Variable(name, *row) for name, row in _TABLE.items()}
STATE_VARIABLES = frozenset(n for n, v in VARIABLES.items() if v.type == "ST")
FLUX_VARIABLES = frozenset(n for n, v in VARIABLES.items() if v.type == "FL")


def variable_type(variable: str) -> str:
    """``ST``, ``FL``, or ``""`` for a variable outside the ISMIP6 standard list."""
    return VARIABLES[variable].type if variable in VARIABLES else ""
