"""Configuration from the environment, with an embedded default that needs no cloud."""

from __future__ import annotations

import os
from pathlib import Path

from ismip6_assets.locations import Location, parse_location

SOURCE_ENV = "ISMIP6_SOURCE_URL"
STORE_ENV = "ISMIP6_STORE_URL"


def data_dir() -> Path:
    """``data/`` in the source checkout (git-ignored), else in the working directory."""
    checkout = Path(__file__).resolve().parents[1]
    base = checkout if (checkout / "pyproject.toml").exists() else Path.cwd()
    return base / "data"


def default_source_url() -> str:
    return str(data_dir() / "sample-archive")


def default_store_url() -> str:
    return str(data_dir() / "store")


def source_url() -> str:
    return os.environ.get(SOURCE_ENV) or default_source_url()


def store_url() -> str:
    return os.environ.get(STORE_ENV) or default_store_url()


def resolve(source: str | None = None, store: str | None = None) -> tuple[Location, Location]:
    """Parse both settings up front, so a bad one fails before any work with a message naming it."""
    return parse_location(source or source_url(), SOURCE_ENV), parse_location(store or store_url(), STORE_ENV)
