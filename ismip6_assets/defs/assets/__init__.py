from ismip6_assets.defs.assets.file_index import file_index
from ismip6_assets.defs.assets.icechunk_commit import icechunk_commit
from ismip6_assets.defs.assets.ice_volume import ice_volume
from ismip6_assets.defs.assets.sea_level import sea_level
from ismip6_assets.defs.assets.store_catalog import store_catalog
from ismip6_assets.defs.assets.virtual_dataset import virtual_dataset

__all__ = ["file_index", "icechunk_commit", "ice_volume", "sea_level", "store_catalog", "virtual_dataset"]
