"""What a reviewer reads in a paused retrain run: the candidate's scores against base and champion, the gate,
and per direction the scores, p-values and the segments that moved most, as markdown safe to show."""

from __future__ import annotations

from typing import Any

from bayling.core.metric_keys import AVERAGE, averages, changes_vs_base, score_keys
from bayling.register.summary import small_sample_caveat

MAX_CELL = 200  # characters of one segment shown in the pause; report.html has them whole
MARKDOWN_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|~"})


def markdown_cell(text: Any, limit: int = MAX_CELL) -> str:
    """Text made safe for one markdown table cell: on one line, cut to `limit` characters, and with the
    characters that would end the cell or start markup (pipes, asterisks, brackets, ...) escaped."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat.translate(MARKDOWN_SPECIAL)


def _number(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


MAX_SEGMENT_DIRECTIONS = 12


def review_tables(review: dict[str, Any]) -> list[str]:
    """The per-direction table (candidate, champion and base chrF++, p against the champion) and each
    direction's most regressed and most improved segments, as markdown lines."""
    directions = review.get("directions") or []
    if not directions:
        return []
    lines = ["### Per direction", "",
             "chrF++ per direction; p is the paired bootstrap's (two-sided) for \"candidate and champion are equally good\": "
             "a small p says the gap is not chance, in the direction the scores show.", "",
             "| test set | direction | candidate chrF++ | champion chrF++ | base chrF++ | p chrF++ | p BLEU | segments |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for d in directions:
        scores, p = d["scores"], d.get("p_vs_champion") or {}
        lines.append(f"| {markdown_cell(d['test_set'])} | {markdown_cell(d['direction'])} | "
                     + " | ".join(_number((scores.get(model) or {}).get("chrf_pp")) for model in ("candidate", "champion", "base"))
                     + f" | {_number(p.get('chrf_pp'), 4)} | {_number(p.get('bleu'), 4)} | {d['segments']} |")
    # Segments for the directions that lost most, so a 200-direction FLORES review stays a readable pause form
    # (Prefect keeps it as run input); report.html lists every direction.
    worst = sorted(directions, key=lambda d: min((s["delta"] for s in d["regressed"]), default=0.0))[:MAX_SEGMENT_DIRECTIONS]
    if len(directions) > len(worst):
        lines += ["", f"Segments below for the {len(worst)} directions that regressed most; all {len(directions)} are in report.html."]
    for d in worst:
        comparator = d["comparator"] or "comparator"
        lines += ["", f"#### {markdown_cell(d['test_set'])} {markdown_cell(d['direction'])}: {markdown_cell(d['comparator_label'])}"]
        for change in ("regressed", "improved"):
            segments = d[change]
            if not segments:
                lines += ["", f"No segment {change} {markdown_cell(d['comparator_label'])}."]
                continue
            lines += ["", f"{len(segments)} most {change} {markdown_cell(d['comparator_label'])} (sentence chrF++):", "",
                      f"| Δ chrF++ | source | reference | {comparator} (chrF++) | candidate (chrF++) |", "|---:|---|---|---|---|"]
            lines += [f"| {s['delta']:+.2f} | {markdown_cell(s['source'])} | {markdown_cell(s['reference'])} | "
                      f"{markdown_cell(s['comparator_output'])} ({s['comparator_chrf_pp']:.2f}) | "
                      f"{markdown_cell(s['candidate_output'])} ({s['candidate_chrf_pp']:.2f}) |" for s in segments]
    return [*lines, ""]


def base_change_table(metrics: dict[str, Any], test_set: str) -> list[str]:
    """Fine-tuned against base per direction and on the average (chrF++): change, 95% interval, p."""
    rows = changes_vs_base(metrics, test_set)
    if not rows:
        return []
    lines = [f"### Fine-tuned vs base on `{markdown_cell(test_set)}` (chrF++)", "",
             "The change per direction with its 95% paired-bootstrap interval; p is the two-sided p-value for \"fine-tuning "
             "changed nothing\".", "",
             "| direction | base | fine-tuned | change | 95% interval | p |", "|---|---:|---:|---:|---|---:|"]
    for r in rows:
        interval = "–" if r.low is None or r.high is None else f"[{r.low:+.2f}, {r.high:+.2f}]"
        name = "**average**" if r.direction == AVERAGE else markdown_cell(r.direction)
        lines.append(f"| {name} | {r.base:.2f} | {r.final:.2f} | {r.change:+.2f} | {interval} | {_number(r.p_value, 4)} |")
    caveat = small_sample_caveat(metrics, test_set)
    return [*lines, *(["", f"Note: {caveat}."] if caveat else []), ""]


def review_markdown(registration: dict[str, Any], metrics: dict[str, Any], gate_table: str, report_path: str, tracking_uri: str,
                    review: dict[str, Any] | None = None) -> str:
    """What a reviewer sees in the paused run: scores against base and champion, the gate, the review per
    direction (reports/eval/review.json: scores, p-values, the segments that moved most), where the report is."""
    primary = metrics.get("primary_test_set", "heldout")
    rows = ["| model | BLEU | chrF | chrF++ |", "|---|---:|---:|---:|"]
    for label, model in (("candidate", "final"), ("base", "base")):
        avg = averages(metrics, primary, model)
        if avg:
            rows.append(f"| {label} | {avg['bleu']:.2f} | {avg['chrf']:.2f} | {avg['chrf_pp']:.2f} |")
    champion = [k for k in score_keys(metrics) if k.model == "champion" and k.test_set == primary and not k.is_average]
    if champion:
        by_metric: dict[str, list[float]] = {}
        for key in champion:
            by_metric.setdefault(key.metric, []).append(metrics[str(key)])
        mean = {m: sum(v) / len(v) for m, v in by_metric.items()}
        label = f"champion v{metrics.get('champion_version', '?')}"
        rows.append(f"| {label} | {mean.get('bleu', 0):.2f} | {mean.get('chrf', 0):.2f} | {mean.get('chrf_pp', 0):.2f} |")
    return "\n".join(
        [
            f"## Review {registration['model_name']} version {registration['version']}",
            "",
            f"Macro averages on `{primary}`:",
            "",
            *rows,
            "",
            *base_change_table(metrics, primary),
            "### Gate",
            "",
            gate_table,
            "",
            *review_tables(review or {}),
            f"Report: `{report_path}` (also in the evaluate run's artifacts under `report/`). MLflow: {tracking_uri}, "
            f"register run `{registration['run_id']}`.",
            "",
            f"Decide here, or run `python -m tools.approve {registration['version']} --decision approve|reject --by NAME [--note TEXT]`.",
        ]
    )
