"""Turn library results into metadata people read in the Dagster UI.

Numeric entries stay numbers on every materialization (never "" or None) so that the UI can plot
them across runs and partitions.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from ismip6_assets.core.locations import Location
from ismip6_assets.core.paths import PartitionKey
from ismip6_assets.core.preview import Preview, open_snippet
from ismip6_assets.core.reconcile import markdown_table
from ismip6_assets.core.redact import redact
from ismip6_assets.core.views import ViewSummary

_COLUMN_TYPES = {bool: "bool", int: "int", float: "float"}


def table(records: list[dict], columns: list[str] | None = None) -> dg.MetadataValue:
    if not records:
        return dg.MetadataValue.md("_none_")
    columns = columns or list(dict.fromkeys(k for r in records for k in r))
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: _cell(r.get(c)) for c in columns}) for r in records],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, _column_type(records, c)) for c in columns]),
    )


def _column_type(records: list[dict], column: str) -> str:
    kinds = {_COLUMN_TYPES.get(type(r.get(column)), "string") for r in records if r.get(column) is not None}
    return kinds.pop() if len(kinds) == 1 else "string"


def _cell(value):
    return value if isinstance(value, (int, float, bool)) or value is None else redact(str(value))


def file_records(rows: pd.DataFrame) -> list[dict]:
    """One record per indexed file, from the listing alone: variable, size, fingerprint, file name.
    (Its format comes from the one read of its head in `virtual_dataset`: no request here.)"""
    return [
        {
            "variable": r["variable"],
            "size": int(r["size"]),
            "fingerprint": r["fingerprint"],
            "skipped": bool(r["skipped"]),
            "file": r["url"].rsplit("/", 1)[-1],
        }
        for r in rows.to_dict("records")
    ]


def file_table(records: list[dict]) -> dg.MetadataValue:
    return table(records, ["variable", "size", "fingerprint", "skipped", "file"])


def virtual_file_records(files: list) -> list[dict]:
    """Per virtualized file: its chunk references, the coordinates loaded inline, the quirks fixed."""
    from virtualizarr.manifests import ManifestArray

    return [
        {
            "variable": f.variable,
            "file": f.url.rsplit("/", 1)[-1],
            "format": f.file_format,
            "chunk_refs": f.chunk_refs,
            "loaded_coordinates": ", ".join(n for n, v in f.dataset.variables.items() if not isinstance(v.data, ManifestArray)),
            "quirks": ", ".join(f.quirks) or "none",
        }
        for f in files
    ]


def failure_table(failures: list) -> dg.MetadataValue:
    records = [f.to_dict() if hasattr(f, "to_dict") else dict(f) for f in failures]
    return table([{"file": r["url"].rsplit("/", 1)[-1], "error": r["error"], "url": r["url"]} for r in records], ["file", "error", "url"])


def group_list(groups: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.md("\n".join(f"- `{g}`" for g in groups) if groups else "_none_")


def snippet(code: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"```python\n{code}```")


def preview_markdown(preview: Preview | None, reason: str = "") -> dg.MetadataValue:
    if preview is None:
        return dg.MetadataValue.md(f"_no preview: {reason or 'the store holds no 2-D variable for this partition'}_")
    return dg.MetadataValue.md(preview.markdown())


def markdown(records: list[dict]) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(records))


def view_metadata(view: ViewSummary | None) -> dict:
    """The view's group, years, variables, and those left out with their reasons (numbers stay numbers)."""
    return {
        "view": view.group if view else "",
        "view_years": f"{view.years[0]}-{view.years[1]}" if view and view.years else "",
        "view_variables": len(view.variables) if view else 0,
        "view_variable_names": ", ".join(view.variables) if view else "",
        "view_left_out": table([{"variable": v, "reason": r} for v, r in view.left_out.items()] if view else [], ["variable", "reason"]),
        "view_inline": ", ".join(view.inline) if view and view.inline else "none",
    }


def open_code(store: Location, source: Location, partition: PartitionKey, view: ViewSummary | None, example: str) -> str:
    """The snippet that opens the partition's view and reads `example` in its last year; the
    variable group when there is no view."""
    if view is None or not view.variables:
        return open_snippet(store, source, partition.variable_group(example), example)
    example = example if example in view.variables else view.variables[0]
    years = view.variable_years.get(example)
    return open_snippet(store, source, view.group, example, f"sel(time=\"{years[1]}\")" if years else "")
