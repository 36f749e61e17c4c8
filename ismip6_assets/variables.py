"""The 37 ISMIP6 standard variables and their type: state snapshot (ST) or yearly flux (FL)."""

from __future__ import annotations

STATE_VARIABLES = frozenset(
    "base iareafl iareagr lim limnsw litempbotfl litempbotgr litemptop lithk orog sftflf sftgif sftgrf "
    "strbasemag topg xvelbase xvelmean xvelsurf yvelbase yvelmean yvelsurf zvelbase zvelsurf".split()
)
FLUX_VARIABLES = frozenset(
    "acabf dlithkdt hfgeoubed libmassbffl libmassbfgr licalvf lifmassbf ligroundf tendacabf tendlibmassbf "
    "tendlibmassbffl tendlicalvf tendlifmassbf tendligroundf".split()
)


def variable_type(variable: str) -> str:
    """``ST``, ``FL``, or ``""`` for a variable outside the ISMIP6 standard list."""
    return "ST" if variable in STATE_VARIABLES else "FL" if variable in FLUX_VARIABLES else ""
