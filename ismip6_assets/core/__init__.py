"""The library: everything that knows neither Dagster nor the environment (values in, values out)."""
