"""A self-contained HTML evaluation report: tables of the flat metrics, the per-direction charts
(candidate vs base vs champion) as PNGs inlined and as files for DVC plots, and the review a person
decides on (scores per direction, the segments that regressed and improved most; see
bayling.evaluate.review). Every value is escaped: segments are model outputs and test data."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from bayling.core.metric_keys import AVERAGE, METRICS, TERM_METRICS, ScoreKey, score_key, score_keys, source_shares_text
from bayling.core.plots import grouped_barh


def _cell(value: Any) -> str:
    return f"<td>{'' if value is None else html.escape(str(value))}</td>"


def _score_cells(scores: dict[str, Any] | None) -> str:
    return "".join(_cell((scores or {}).get(m)) for m in METRICS)


def _segments_table(kind: str, direction: dict[str, Any]) -> str:
    comparator = direction["comparator"] or "comparator"
    segments = direction[kind]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in
                   ["id", "Δ chrF++", "source", "reference", f"{comparator} output", f"{comparator} chrF++", "candidate output",
                    "candidate chrF++"])
    body = "".join(
        "<tr>" + "".join(_cell(s[k]) for k in ("id", "delta", "source", "reference", "comparator_output", "comparator_chrf_pp",
                                               "candidate_output", "candidate_chrf_pp")) + "</tr>"
        for s in segments
    ) or f"<tr><td colspan='8'>no segment {html.escape(kind)} {html.escape(direction['comparator_label'])}</td></tr>"
    caption = f"{len(segments)} most {kind} segments {direction['comparator_label']} (sentence chrF++)"
    return (f'<table class="segments" data-kind="{html.escape(kind)}"><caption>{html.escape(caption)}</caption>'
            f"<tr>{head}</tr>{body}</table>")


def _base_cells(direction: dict[str, Any]) -> str:
    """The candidate's chrF++ change against its base model with the 95% interval, and the p-value."""
    candidate, base = (direction["scores"].get("candidate") or {}), (direction["scores"].get("base") or {})
    interval = (direction.get("interval_vs_base") or {}).get("chrf_pp")
    if "chrf_pp" not in candidate or "chrf_pp" not in base:
        return _cell(None) + _cell(None)
    change = f"{candidate['chrf_pp'] - base['chrf_pp']:+.2f}" + (f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else "")
    return _cell(change) + _cell((direction.get("p_vs_base") or {}).get("chrf_pp"))


def _source_shares(direction: dict[str, Any]) -> str | None:
    """The base model's and the candidate's share of outputs in the source language, as 'base% → candidate%'."""
    shares = direction.get("in_source_language") or {}
    if not shares:
        return None
    return source_shares_text(shares.get("base"), shares.get("candidate"))


def moved_section(review: dict[str, Any] | None) -> str:
    """The understanding tasks and languages that moved: a paired test at p < 0.05 against the base or the champion."""
    rows = (review or {}).get("understanding_moved") or []
    if not rows:
        return ""
    fields = ("task", "language", "metric", "against", "direction", "final", "change", "p", "items")
    head = "".join(f"<th>{f}</th>" for f in fields)
    body = "".join("<tr>" + "".join(_cell(row.get(f)) for f in fields) + "</tr>" for row in rows)
    return ('<section id="understanding-moved"><h2>Understanding: what moved</h2><p>Tasks and languages where the candidate '
            "differs from the base model or the champion at p &lt; 0.05 (exact McNemar test on the same documents).</p>"
            f'<table class="moved"><tr>{head}</tr>{body}</table></section>')


def review_section(review: dict[str, Any] | None) -> str:
    """The review per direction: candidate, champion and base scores with p-values against the champion,
    then each direction's most regressed and most improved segments."""
    if not review or not review.get("directions"):
        return '<section id="review"><h2>Review per direction</h2><p>No translation directions were reviewed.</p></section>'
    names = {"bleu": "BLEU", "chrf": "chrF", "chrf_pp": "chrF++"}
    labels = ["test set", "direction", "segments", "segments ranked"]
    labels += [f"{model} {names[m]}" for model in ("candidate", "champion", "base") for m in METRICS]
    labels += [f"p vs champion {names[m]}" for m in METRICS]
    labels += ["chrF++ change vs base (95% interval)", "p vs base chrF++", "in the source language (base → candidate)"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in labels)
    rows, details = [], []
    for d in review["directions"]:
        rows.append("<tr>" + "".join(_cell(v) for v in (d["test_set"], d["direction"], d["segments"], d["comparator_label"]))
                    + "".join(_score_cells(d["scores"].get(model)) for model in ("candidate", "champion", "base"))
                    + _score_cells(d["p_vs_champion"]) + _base_cells(d) + _cell(_source_shares(d)) + "</tr>")
        details.append(f"<h3>{html.escape(d['test_set'])} {html.escape(d['direction'])}: {html.escape(d['comparator_label'])}</h3>"
                       + _segments_table("regressed", d) + _segments_table("improved", d))
    return (
        '<section id="review"><h2>Review per direction</h2>'
        f"<p>Segments ranked by {html.escape(str(review.get('ranking', '')))}; the top {html.escape(str(review.get('k', '')))} "
        "each way. A p-value is the paired bootstrap's (two-sided) for candidate and champion (or base) being equally "
        "good: a small p says the gap is unlikely to be chance, in the direction the scores show.</p>"
        f'<table class="directions"><tr>{head}</tr>{"".join(rows)}</table>{"".join(details)}</section>'
    )


AVERAGE_ROWS = (("base", "base"), ("fine-tuned", "final"), ("change vs base", "delta"), ("95% interval, low", "delta_low"),
                ("95% interval, high", "delta_high"), ("p vs base", "p_vs_base"), ("champion", "champion"),
                ("change vs champion", "delta_vs_champion"), ("95% interval vs champion, low", "delta_vs_champion_low"),
                ("95% interval vs champion, high", "delta_vs_champion_high"), ("p vs champion", "p_vs_champion"))


NAMES = {"bleu": "BLEU", "chrf": "chrF", "chrf_pp": "chrF++", "term_usage": "term usage",
         "term_usage_items": "term usage (mean per item)"}


def averages_table(metrics: dict[str, Any], test_set: str) -> str:
    """One test set's macro averages: each model's scores, the changes with their 95% intervals, and the p-values;
    for a lexically constrained set, the term usage rates too (shares of the terms found, bayling/evaluate/terms.py)."""
    shown = (*METRICS, *TERM_METRICS) if any(k.test_set == test_set and k.metric in TERM_METRICS for k in score_keys(metrics)) \
        else METRICS
    head = "<tr><th></th>" + "".join(f"<th>{NAMES[m]}</th>" for m in shown) + "</tr>"
    rows = []
    for label, model in AVERAGE_ROWS:
        values = [metrics.get(score_key(test_set, AVERAGE, model, m)) for m in shown]
        if any(v is not None for v in values):
            rows.append(f"<tr><td>{html.escape(label)}</td>" + "".join(_cell(v) for v in values) + "</tr>")
    return (f'<table class="averages" data-test-set="{html.escape(test_set)}"><caption>{html.escape(test_set)}: macro average '
            f"over its directions</caption>{head}{''.join(rows)}</table>")


def _other_scores(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """What the averages tables leave out: capability ratios and the judge's counts (understanding has its own table)."""
    out = []
    for k, v in sorted(metrics.items()):
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        key = ScoreKey.parse(k)
        if key is None and k.startswith("instructions") \
                or key is not None and key.model.startswith("ratio_vs_"):
            out.append((k, v))
    return out


def understanding_table(rows: list[dict[str, Any]]) -> str:
    """Each understanding entry and language: every model's score, the change against base and champion, and the
    paired test's p-value (McNemar on the documents), one block of columns per metric."""
    if not rows:
        return ""
    metrics = sorted({k[len("final_"):] for row in rows for k in row if k.startswith("final_")})
    columns = [(f"{model}_{m}", f"{label} {m}") for m in metrics for model, label in (
        ("final", "candidate"), ("base", "base"), ("delta", "Δ vs base"), ("p_vs_base", "p"), ("champion", "champion"),
        ("delta_vs_champion", "Δ vs champion"), ("p_vs_champion", "p"))]
    columns = [(key, label) for key, label in columns if any(row.get(key) is not None for row in rows)]
    head = "<tr><th>task</th><th>language</th>" + "".join(f"<th>{html.escape(label)}</th>" for _, label in columns) + "</tr>"
    body = "".join("<tr>" + f"<td>{html.escape(row['test_set'])}</td><td>{html.escape(row['direction'])}</td>"
                   + "".join(_cell(row.get(key)) for key, _ in columns) + "</tr>" for row in rows)
    return f'<h2>Understanding</h2><table class="understanding">{head}{body}</table>'


def render_html(metrics: dict[str, Any], rows: list[dict[str, Any]], charts: list[Path], models: list[str],
                review: dict[str, Any] | None = None, understanding: list[dict[str, Any]] | None = None) -> str:
    def img(path: Path) -> str:
        data = base64.b64encode(path.read_bytes()).decode()
        name = html.escape(path.stem)
        return f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'

    # per_language_rows gives every row term usage columns when a lexically constrained set was evaluated
    shown = (*METRICS, *TERM_METRICS) if rows and f"final_{TERM_METRICS[0]}" in rows[0] else METRICS
    header = "".join(
        f"<th>{html.escape(h)}</th>" for h in ["test set", "direction"] + [f"{m} {NAMES[k]}" for m in models for k in shown]
    )
    body = []
    for row in rows:
        cells = [row["test_set"], row["direction"]] + [row.get(f"{m}_{k}") for m in models for k in shown]
        body.append("<tr>" + "".join(f"<td>{'' if c is None else html.escape(str(c))}</td>" for c in cells) + "</tr>")
    averaged = {k.test_set for k in score_keys(metrics) if k.is_average}
    tables = "".join(averages_table(metrics, name) for name in sorted(averaged))
    summary = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in _other_scores(metrics))
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in metrics.get("notes", []))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>BayLing evaluation</title>"
        # prose keeps a readable measure; the review's tables (15 score columns) get the window's full width
        "<style>body{font-family:sans-serif;margin:2em}p,ul,h1,h2,h3{max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}td:first-child,td:nth-child(2){text-align:left}"
        "img{max-width:100%}figure{margin:1em 0}table.segments td{text-align:left;white-space:pre-wrap;vertical-align:top}"
        "caption{text-align:left;font-weight:bold}table.averages td:nth-child(2){text-align:right}</style></head><body>"
        "<h1>BayLing evaluation report</h1>"
        f"<h2>Averages and significance</h2>{tables}"
        + (f"<h2>Ratios and other scores</h2><table>{summary}</table>" if summary else "")
        + 
        f"<h2>Per direction</h2><table><tr>{header}</tr>{''.join(body)}</table>"
        f"{understanding_table(understanding or [])}{moved_section(review)}"
        f"{review_section(review)}"
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
