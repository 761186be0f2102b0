"""The run summary printed at the end of a pipeline run: scores before/after, registered version, where to look."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bayling.core.metric_keys import AVERAGE, averages, changes_vs_base, segments_key, source_language_key, source_shares_text
from bayling.core.metric_keys import directions as scored_directions


def _read(path: Path) -> Any:
    return json.loads(path.read_text("utf-8")) if path.exists() else None


def collect(root: Path) -> dict[str, Any]:
    return {
        "eval": _read(root / "reports" / "eval" / "metrics.json"),
        "review": _read(root / "reports" / "eval" / "review.json"),  # scores and moved segments per direction
        "train": _read(root / "reports" / "train" / "metrics.json"),
        "register": _read(root / "reports" / "register.json"),
    }


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def change_lines(metrics: dict[str, Any], test_set: str, metric: str = "chrf_pp") -> list[str]:
    """The fine-tuned model against its base per direction and on the average: both scores, the change, its 95%
    bootstrap interval and the paired bootstrap's two-sided p-value."""
    rows = changes_vs_base(metrics, test_set, metric)
    if not rows:
        return []
    label = {"chrf_pp": "chrF++", "chrf": "chrF", "bleu": "BLEU"}[metric]
    width = max(len(r.direction) for r in rows) + 2
    copied = {r.direction: [metrics.get(source_language_key(test_set, r.direction, m)) for m in ("base", "final")] for r in rows}
    flagged = any(v is not None for pair in copied.values() for v in pair)
    lines = [f"{test_set} {label} per direction, fine-tuned vs base (paired bootstrap: change, 95% interval, two-sided p"
             + ("; outputs in the source language, base → tuned" if flagged else "") + "):",
             f"  {'direction':<{width}}{'base':>8}{'tuned':>8}{'change':>9}   {'95% interval':<18}{'p':>7}"
             + (f"   {'in source':<11}" if flagged else "")]
    for r in rows:
        interval = f"[{_signed(r.low)}, {_signed(r.high)}]"
        p_value = "–" if r.p_value is None else f"{r.p_value:.3f}"
        name = "average" if r.direction == AVERAGE else r.direction
        line = f"  {name:<{width}}{r.base:8.2f}{r.final:8.2f}{r.change:+9.2f}   {interval:<18}{p_value:>7}"
        if flagged and r.direction != AVERAGE:
            line += "   " + source_shares_text(*copied[r.direction])
        lines.append(line)
    caveat = small_sample_caveat(metrics, test_set)
    return lines + ([f"  {caveat}"] if caveat else [])


def small_sample_caveat(metrics: dict[str, Any], test_set: str, alpha: float = 0.05) -> str | None:
    """A warning when a direction has too few segments for any distribution-free paired test to reach `alpha`: the
    bootstrap's p-value then says nothing the gate will act on (it can read 0.001 for two segments)."""
    from bayling.register.gate import segments_needed

    fewest = metrics.get(segments_key(test_set, AVERAGE))
    if not isinstance(fewest, int) or fewest >= segments_needed(alpha):
        return None
    return (f"with {fewest} segments in a direction no paired test can reach p < {alpha} ({segments_needed(alpha)} needed): "
            "read these p-values as noise; the gate does")


def render(summary: dict[str, Any], stage_results: list[dict[str, Any]], tracking_uri: str, seconds: float) -> str:
    lines = [f"BayLing pipeline finished in {seconds:.0f}s"]
    lines.append(
        "stages: " + ", ".join(f"{r['stage']} ({'ran' if r['ran'] else 'up to date'}, {r['seconds']:.0f}s)" for r in stage_results)
    )
    evaluation = summary.get("eval")
    if evaluation:
        primary = evaluation.get("primary_test_set", "heldout")
        directions = scored_directions(evaluation, primary, "final")
        lines.append(f"{primary} translation, macro average over {len(directions)} directions:")
        lines.append(f"  {'':<12}{'BLEU':>8}{'chrF':>8}{'chrF++':>8}")
        for label, model in (("base", "base"), ("fine-tuned", "final"), ("change", "delta")):
            avg = averages(evaluation, primary, model)
            if avg:
                spec = "+8.2f" if label == "change" else "8.2f"
                lines.append(f"  {label:<12}" + "".join(format(avg[m], spec) for m in ("bleu", "chrf", "chrf_pp")))
        lines += change_lines(evaluation, primary)
        for note in evaluation.get("notes", []):
            lines.append(f"  note: {note}")
    train = summary.get("train")
    if train:
        lines.append(f"training: {train['steps']} steps, loss {train['train_loss']:.3f}, {train['tokens_per_s']:.0f} tokens/s")
    reg = summary.get("register")
    mix = (reg or {}).get("mix")
    if mix:
        from bayling.register.training_mix import summary_line

        lines.append(summary_line(mix))
        if mix["misses"]:
            lines.append(f"  warning: off the requested mix by more than {mix['tolerance_points']} points "
                         f"(register.mix_tolerance_points): {'; '.join(mix['misses'])}")
    if reg:
        lines.append(
            f"registered model: {reg['model_name']} version {reg['version']} "
            + (f"with alias '{reg['alias']}'" if reg.get("alias") else "without an alias (the gate failed)")
            + f" (MLflow run {reg['run_id']})"
        )
    if tracking_uri.startswith("sqlite:///"):
        lines.append(f"MLflow UI: mlflow ui --backend-store-uri {tracking_uri} --port 5000, then open http://127.0.0.1:5000")
    else:
        lines.append(f"MLflow UI: {tracking_uri}")
    return "\n".join(lines)
