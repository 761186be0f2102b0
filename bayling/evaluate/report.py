"""A self-contained HTML evaluation report: tables of the flat metrics, and the per-direction charts
(candidate vs base vs champion) as PNGs inlined and as files for DVC plots."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from bayling.core.plots import grouped_barh


def render_html(metrics: dict[str, Any], rows: list[dict[str, Any]], charts: list[Path], models: list[str]) -> str:
    def img(path: Path) -> str:
        data = base64.b64encode(path.read_bytes()).decode()
        name = html.escape(path.stem)
        return f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'

    header = "".join(
        f"<th>{html.escape(h)}</th>" for h in ["test set", "direction"] + [f"{m} {k}" for m in models for k in ("BLEU", "chrF", "chrF++")]
    )
    body = []
    for row in rows:
        cells = [row["test_set"], row["direction"]] + [row.get(f"{m}_{k}") for m in models for k in ("bleu", "chrf", "chrf_pp")]
        body.append("<tr>" + "".join(f"<td>{'' if c is None else html.escape(str(c))}</td>" for c in cells) + "</tr>")
    summary = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in sorted(metrics.items())
        if isinstance(v, (int, float))
        and (".avg." in k or k.endswith((".accuracy", ".acc_norm")) or "p_vs_champion" in k or "ratio_vs" in k
             or k.startswith("instructions"))
    )
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in metrics.get("notes", []))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>BayLing evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}td:first-child,td:nth-child(2){text-align:left}"
        "img{max-width:100%}figure{margin:1em 0}</style></head><body>"
        "<h1>BayLing evaluation report</h1>"
        f"<h2>Averages, ratios, significance</h2><table>{summary}</table>"
        f"<h2>Per direction</h2><table><tr>{header}</tr>{''.join(body)}</table>"
        f"<h2>Charts</h2>{''.join(img(p) for p in charts)}"
        f"<h2>Notes</h2><ul>{notes}</ul></body></html>"
    )


def model_comparison(rows: list[dict], metric: str, models: list[str], path: Path, title: str) -> None:
    """Grouped horizontal bars: one group per direction, one bar per model (candidate, base, champion)."""
    labels = [f"{r['test_set']} {r['direction']}" for r in rows]
    present = [m for m in models if any(r.get(f"{m}_{metric}") is not None for r in rows)]
    series = {model: [r.get(f"{model}_{metric}") or 0 for r in rows] for model in present}
    grouped_barh(
        labels,
        series,
        path,
        title=title,
        xlabel=metric,
        label_fontsize=8,
        size=(8, max(2.5, 0.5 * len(labels) * max(1, len(present)) / 2 + 1.2)),
    )
