"""Turn library results into metadata people read in the Dagster UI."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from ismip6_assets.reconcile import markdown_table


def table(records: list[dict], columns: list[str] | None = None) -> dg.MetadataValue:
    if not records:
        return dg.MetadataValue.md("_none_")
    columns = columns or list(dict.fromkeys(k for r in records for k in r))
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: _cell(r.get(c)) for c in columns}) for r in records],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "int" if isinstance(records[0].get(c), int) else "string") for c in columns]),
    )


def _cell(value):
    return value if isinstance(value, (int, float, bool)) or value is None else str(value)


def file_table(rows: pd.DataFrame) -> dg.MetadataValue:
    records = rows[["variable", "size", "fingerprint", "skipped", "url"]].to_dict("records")
    return table([{**r, "size": int(r["size"]), "skipped": bool(r["skipped"])} for r in records])


def markdown(records: list[dict]) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(records))
