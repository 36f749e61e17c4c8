from ismip6_assets.cli import entry

entry()
