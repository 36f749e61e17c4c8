"""The Dagster layer, one module per concept (dagster-open-platform's layout): wiring only, the logic is in `core`."""
