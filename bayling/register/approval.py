"""Human approval of a registered candidate, and the version's record of it.

MLflow keeps no alias history, so the model version carries the record: every decision is its own tag,
`decision.<sequence>.<suffix>`, holding one JSON record (who, authenticated or not, display name,
when, flow run, champion before and after, note); every evaluation of the gate likewise
(`gate.<sequence>.<suffix>`). Nothing is ever rewritten or truncated: a record is at most a few
thousand characters (the note is capped at 2,000 and refused beyond), well inside MLflow's limit on
one tag value (5,000 characters on older servers, 100,000 now), and there is no limit on the number of
tags. Summary tags (`decision`, `reviewed_by`, ...) show the latest decision in the UI.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bayling.config.register import ApprovalParams
from bayling.core.errors import PipelineError
from bayling.core.metric_keys import AVERAGE, averages, changes_vs_base, score_keys
from bayling.register.champion import alias_holder
from bayling.register.identity import APPROVER_PERMISSION, MAX_DISPLAY_NAME, MAX_NOTE, Identity, clean_text

Decision = Literal["approve", "reject", "timeout", "refused"]
DECISION_PREFIX = "decision."  # one tag per decision: decision.<sequence>.<unique suffix> = its JSON record
VERDICT_PREFIX = "gate."  # one tag per gate evaluation: gate.<sequence>.<unique suffix> = its JSON record
CHALLENGE_TAG = "approval.challenge"


def pause_key(model_name: str, version: str) -> str:
    """The key a retrain run pauses under while it waits for a decision on this version (attempts add -<n>)."""
    return f"approval-{model_name}-v{version}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def canonical_version(client: Any, model_name: str, version: str) -> Any:
    """The registered version object for a version number as typed ("01" is version 1), or a clear error."""
    from mlflow.exceptions import MlflowException

    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise PipelineError(f"version {version!r} is not a version number (1, 2, ...)")
    try:
        return client.get_model_version(model_name, str(int(text)))
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "PERMISSION_DENIED":
            raise PipelineError(f"MLflow refused to show {model_name} version {int(text)}: permission denied") from None
        raise PipelineError(f"{model_name} has no version {int(text)}") from None


# ---------------------------------------------------------------- records: one tag each, never rewritten
def _records(tags: dict[str, str], prefix: str) -> list[dict[str, Any]]:
    found = []
    for key, value in tags.items():
        if key.startswith(prefix) and key.count(".") == 2 and key.split(".")[1].isdigit():
            try:
                found.append({"key": key, **json.loads(value)})
            except json.JSONDecodeError:
                found.append({"key": key, "unreadable": value[:200]})
    return sorted(found, key=lambda r: (int(r["key"].split(".")[1]), r.get("at", ""), r["key"]))


def _next_key(tags: dict[str, str], prefix: str) -> str:
    """A new record's tag key: the next sequence number, and a random suffix so two writers never collide."""
    sequence = 1 + max((int(k.split(".")[1]) for k in tags if k.startswith(prefix) and k.count(".") == 2
                        and k.split(".")[1].isdigit()), default=0)
    return f"{prefix}{sequence:04d}.{uuid.uuid4().hex[:8]}"


def history(client: Any, model_name: str, version: str) -> list[dict[str, Any]]:
    """Every decision recorded on the version, in order."""
    found = canonical_version(client, model_name, version)
    return _records(dict(found.tags or {}), DECISION_PREFIX)


def record_gate_verdict(client: Any, model_name: str, version: str, passed: bool, failed_rules: list[str], gate_params: dict[str, Any],
                        evaluation: str, run_id: str) -> dict[str, Any]:
    """Add this gate evaluation to the version's verdicts and return the version's effective verdict."""
    found = canonical_version(client, model_name, version)
    tags = dict(found.tags or {})
    record = {"passed": passed, "failed_rules": failed_rules[:20], "failed_rule_count": len(failed_rules),
              "gate_params": gate_params, "evaluation": evaluation, "register_run_id": run_id, "at": now()}
    key = _next_key(tags, VERDICT_PREFIX)
    client.set_model_version_tag(model_name, found.version, key, json.dumps(record, ensure_ascii=False))
    tags[key] = json.dumps(record)
    return effective_verdict(tags)


def effective_verdict(tags: dict[str, str]) -> dict[str, Any]:
    """The version's gate verdict over all its evaluations.

    A failure stands until a later evaluation passes: re-registering the same files under a looser
    gate, with the same evaluation, does not erase it. A pass that comes from a new evaluation of the
    same files (another evaluate run) does, and says so.
    """
    verdicts = _records(tags, VERDICT_PREFIX)
    if not verdicts:  # versions registered before verdicts were recorded
        return {"passed": tags.get("gate", "passed") != "failed", "evaluations": 0, "reevaluated": False}
    failed = [v for v in verdicts if not v.get("passed")]
    last = verdicts[-1]
    if not failed:
        return {"passed": True, "evaluations": len(verdicts), "reevaluated": False}
    cleared = last.get("passed") and all(last.get("evaluation") != v.get("evaluation") for v in failed)
    return {"passed": bool(cleared), "evaluations": len(verdicts), "reevaluated": bool(cleared),
            "failed_evaluations": len(failed), "last_failure": failed[-1]}


# ---------------------------------------------------------------- decisions
@dataclass(frozen=True)
class DecisionRecord:
    version: str
    decision: str
    identity: str
    authenticated: bool
    display_name: str
    at: str
    flow_run_id: str
    previous_champion: str
    champion_after: str
    note: str
    path: str  # "direct" or "paused-run"
    gate_overridden: bool = False
    reason: str = ""

    @property
    def champion_moved(self) -> bool:
        return self.previous_champion != self.champion_after

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "version"}


def _permission_error(exc: Exception, identity: Identity, what: str, model_name: str) -> PipelineError:
    return PipelineError(f"MLflow refused {identity.describe()} ({what} on {model_name}): permission denied; "
                         f"deciding needs {APPROVER_PERMISSION} on the registered model")


def record_decision(client: Any, model_name: str, version: Any, record: DecisionRecord) -> None:
    """Write the decision as its own record, and the summary tags the MLflow UI shows for the latest one."""
    key = _next_key(dict(version.tags or {}), DECISION_PREFIX)
    client.set_model_version_tag(model_name, version.version, key, json.dumps(record.to_json(), ensure_ascii=False))
    summary = {"decision": record.decision, "reviewed_by": record.identity, "reviewed_at": record.at, "flow_run_id": record.flow_run_id,
               "reviewer_authenticated": str(record.authenticated).lower(), "reviewer_display": record.display_name,
               "previous_champion": record.previous_champion, "note": record.note}
    if record.decision == "refused":
        summary = {"last_refusal": f"{record.at} {record.identity}: {record.reason}"[:1000]}
    for key, value in summary.items():
        client.set_model_version_tag(model_name, version.version, key, value)


def apply_decision(
    client: Any, model_name: str, version: str, decision: Literal["approve", "reject", "timeout"], identity: Identity,
    settings: ApprovalParams, *, display_name: str = "", note: str = "", flow_run_id: str = "none", champion_alias: str = "champion",
    override_gate: bool = False, path: str = "direct",
) -> DecisionRecord:
    """Record a decision on the version and move the champion alias as it says.

    Approve points the alias at the version (a version whose gate verdict is failed needs
    `override_gate`, recorded). Reject leaves the champion, unless the version is the champion: then
    `register.approval.reject_champion` says whether to refuse, clear the alias or give it back to the
    version it displaced. Timeout only records. With `separation_of_duties`, whoever registered the
    version may not decide on it. The caller has already checked that `identity` may decide.
    """
    from mlflow.exceptions import MlflowException

    display_name = clean_text(display_name, "--by", MAX_DISPLAY_NAME, one_line=True)
    note = clean_text(note, "--note", MAX_NOTE, one_line=False)
    found = canonical_version(client, model_name, version)
    number = str(found.version)
    tags = dict(found.tags or {})
    if settings.separation_of_duties and decision != "timeout" and tags.get("registered_by") == identity.name:
        raise PipelineError(f"{identity.name} registered {model_name} version {number} and may not decide on it "
                            "(register.approval.separation_of_duties)")
    verdict = effective_verdict(tags)
    if decision == "approve" and not verdict["passed"] and not override_gate:
        raise PipelineError(f"{model_name} version {number} failed the gate (see its gate.* records); approving it anyway needs "
                            "--override-gate")
    holder = alias_holder(client, model_name, champion_alias)
    previous = str(holder.version) if holder is not None else "none"
    after = previous
    at = now()
    try:
        if decision == "approve":
            if previous == number:
                raise PipelineError(f"{model_name} version {number} already holds '{champion_alias}'")
            client.set_registered_model_alias(model_name, champion_alias, number)
            after = number
        elif decision == "reject" and previous == number:
            if settings.reject_champion == "refuse":
                raise PipelineError(f"{model_name} version {number} is the current '{champion_alias}'; rejecting it would leave the "
                                    "registry inconsistent (register.approval.reject_champion: refuse). Approve another version, or "
                                    "set reject_champion to clear or previous")
            displaced = next((r.get("previous_champion") for r in reversed(_records(tags, DECISION_PREFIX))
                              if r.get("decision") == "approve" and r.get("champion_after") == number), "none")
            if settings.reject_champion == "previous" and displaced not in (None, "none") and _exists(client, model_name, displaced):
                client.set_registered_model_alias(model_name, champion_alias, displaced)
                after = displaced
            else:
                client.delete_registered_model_alias(model_name, champion_alias)
                after = "none"
        record = DecisionRecord(number, decision, identity.name, identity.authenticated, display_name, at, flow_run_id, previous, after,
                                note, path, gate_overridden=decision == "approve" and not verdict["passed"])
        record_decision(client, model_name, found, record)
        if after != previous:
            if after != "none":
                client.set_model_version_tag(model_name, after, f"{champion_alias}_since", at)
            if previous != "none":
                client.set_model_version_tag(model_name, previous, f"{champion_alias}_until", at)
                if after != "none":
                    client.set_model_version_tag(model_name, previous, "superseded_by", after)
        if record.gate_overridden:
            client.set_model_version_tag(model_name, number, "gate_overridden_by", identity.name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise _permission_error(exc, identity, f"{decision} version {number}", model_name) from None
        raise PipelineError(f"MLflow failed while recording the decision on {model_name} version {number}: {exc.message}") from None
    return record


def record_refusal(client: Any, model_name: str, version: str, claimed: str, reason: str, flow_run_id: str) -> DecisionRecord:
    """A decision that was refused (no verifiable identity, or one that may not decide), kept on the record."""
    found = canonical_version(client, model_name, version)
    record = DecisionRecord(str(found.version), "refused", claimed[:256], False, "", now(), flow_run_id, "", "", "", "paused-run",
                            reason=reason[:1000])
    record_decision(client, model_name, found, record)
    return record


def _exists(client: Any, model_name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model_name, version)
        return True
    except MlflowException:
        return False


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
    from bayling.register.summary import small_sample_caveat

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
