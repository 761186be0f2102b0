"""The training mix three ways, for the model card and the run summary: as synthesized, as tokenize kept it, and
as the train steps drew it, in conversations and in supervised tokens, per mix cell, task family and reply
language; and whether the steps' supervised tokens came within `register.mix_tolerance_points` of the
shares synthesize.mix requested."""

from __future__ import annotations

from typing import Any

from bayling.core.composition import AXES, UNITS, Tally, share_misses

STAGES = ("synthesized", "tokenized", "drawn")


def mix_report(composition: dict[str, Any], drawn: dict[str, Any], tolerance_points: float) -> dict[str, Any] | None:
    """reports/register.json's `mix`: shares per stage, unit and axis, the requested cell shares and the cells the
    drawn supervised tokens missed (None without reports/tokenize/composition.json, as for data tokenized before
    it existed)."""
    train = composition.get("train") or {}
    if not train:
        return None
    tallies = {"synthesized": Tally.from_json(train.get("synthesized") or []), "tokenized": Tally.from_json(train.get("kept") or [])}
    if drawn.get("drawn") is not None:
        tallies["drawn"] = Tally.from_json(drawn["drawn"])
    requested = {cell: float(share) for cell, share in (composition.get("requested") or {}).items()}
    shares = {stage: {unit: {axis: tally.shares(axis, unit) for axis in AXES} for unit in UNITS} for stage, tally in tallies.items()}
    misses = []
    if "drawn" in shares and requested:
        misses = share_misses(requested, shares["drawn"]["supervised_tokens"]["cell"], tolerance_points)
    return {"requested": requested, "shares": shares, "tolerance_points": tolerance_points, "misses": misses,
            "steps": drawn.get("steps")}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def mix_tables(report: dict[str, Any]) -> list[str]:
    """Markdown: one table per axis, a column per stage and unit (and the requested share for cells)."""
    stages = [s for s in STAGES if s in report["shares"]]
    header_units = {"conversations": "conv.", "supervised_tokens": "sup. tokens"}
    lines: list[str] = []
    for axis, title in (("cell", "Mix cell"), ("task", "Task family"), ("language", "Reply language")):
        keys = sorted({k for stage in stages for unit in UNITS for k in report["shares"][stage][unit][axis]}
                      | (set(report["requested"]) if axis == "cell" else set()))
        header = [title] + (["requested"] if axis == "cell" else [])
        header += [f"{stage} ({header_units[unit]})" for stage in stages for unit in UNITS]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for key in keys:
            cells = [key] + ([_percent(report["requested"].get(key))] if axis == "cell" else [])
            cells += [_percent(report["shares"][stage][unit][axis].get(key, 0.0)) for stage in stages for unit in UNITS]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def summary_line(report: dict[str, Any]) -> str:
    """One line: the drawn supervised-token share of each requested cell against the request."""
    drawn = report["shares"].get("drawn", report["shares"]["tokenized"])["supervised_tokens"]["cell"]
    where = "the steps drew" if "drawn" in report["shares"] else "tokenize kept"
    cells = ", ".join(f"{cell} {_percent(drawn.get(cell, 0.0))}% ({_percent(share)}%)" for cell, share in report["requested"].items())
    return f"mix of supervised tokens {where} (requested): {cells or 'no cells requested'}"
