"""A PNG per experiment: sea-level contribution against model year, one line per model and the
ensemble median, drawn with Pillow (preview.py's choice: matplotlib is slow to import and is
not a dependency). No Dagster here.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

# Tableau 10: distinguishable lines for up to 10 models; more cycle.
COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def _ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    span = (high - low) or 1.0
    step = 10 ** np.floor(np.log10(span / count))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= count)
    return np.arange(np.ceil(low / step) * step, high + step / 2, step)


def sea_level_series(table: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """Model years (rows) x ``INST_MODEL`` (columns) of `experiment`'s sea-level contribution (mm)."""
    rows = table[(table.experiment == experiment) & table.sle_mm.notna()]
    if rows.empty:
        return pd.DataFrame()
    return rows.assign(name=rows.institution + "_" + rows.model).pivot_table(index="year", columns="name", values="sle_mm")


def sea_level_png(table: pd.DataFrame, experiment: str, width: int = 640, height: int = 400, note: str = "") -> bytes | None:
    """The picture of `experiment`, or None when no model has a sea-level contribution for it."""
    from PIL import Image, ImageDraw, ImageFont

    series = sea_level_series(table, experiment)
    if series.empty:
        return None
    median = series.median(axis=1)
    font = ImageFont.load_default(size=11)
    left, right, top, bottom = 56, 150, 28, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    years = series.index.to_numpy(dtype=float)
    x0, x1 = years.min(), max(years.max(), years.min() + 1)
    y0, y1 = float(np.nanmin(series.values.min(initial=0.0))), float(np.nanmax(series.values.max(initial=0.0)))
    pad = 0.05 * ((y1 - y0) or 1.0)
    y0, y1 = y0 - pad, y1 + pad

    def px(year, mm):
        return left + (year - x0) / (x1 - x0) * (width - left - right), top + (y1 - mm) / (y1 - y0) * (height - top - bottom)

    for tick in _ticks(y0, y1):
        _, y = px(x0, tick)
        draw.line([(left, y), (width - right, y)], fill=(230, 230, 230))
        draw.text((left - 6, y), f"{tick:g}", fill="black", font=font, anchor="rm")
    for tick in _ticks(x0, x1):
        x, _ = px(tick, y0)
        draw.line([(x, height - bottom), (x, height - bottom + 4)], fill="black")
        draw.text((x, height - bottom + 6), f"{tick:.0f}", fill="black", font=font, anchor="ma")
    draw.line([px(x0, 0.0), px(x1, 0.0)], fill=(150, 150, 150))
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.line([px(y, v) for y, v in median.items()], fill="black", width=4)  # under the models: one model still shows
    for i, name in enumerate(series.columns):
        color = _rgb(COLORS[i % len(COLORS)])
        values = series[name].dropna()
        points = [px(y, v) for y, v in zip(values.index, values.to_numpy())]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        draw.line([(width - right + 8, top + 8 + 14 * i), (width - right + 24, top + 8 + 14 * i)], fill=color, width=2)
        draw.text((width - right + 28, top + 8 + 14 * i), name, fill="black", font=font, anchor="lm")
    legend_y = top + 8 + 14 * len(series.columns)
    draw.line([(width - right + 8, legend_y), (width - right + 24, legend_y)], fill="black", width=3)
    draw.text((width - right + 28, legend_y), "ensemble median", fill="black", font=font, anchor="lm")
    draw.text((width // 2, 8), f"{experiment}: sea-level contribution (mm, positive = rise) against its control", fill="black", font=font, anchor="ma")
    draw.text(((left + width - right) // 2, height - 14), "ISMIP6 model year (the state at its end; papers label it year + 1)" + (f" · {note}" if note else ""),
              fill="black", font=font, anchor="ma")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
