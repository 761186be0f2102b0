"""A paused retrain run's side of an approval: what it puts to a reviewer, and acting only on a decision that
proves itself.

Before each pause the run sets a fresh challenge tag on the version. `tools.approve` writes a request
record (decision, note, this challenge) into the approver's own ledger, which only the approver can
write (bayling/approvals/ledger.py), and resumes the run with that record's hash. The run then checks,
with its own (admin) credentials:
- that the record is in the named user's ledger and verifies;
- that it answers this pause;
- that the ledger is the user's alone;
- that the user may decide.
Only then does it apply the decision, recorded as `applied` in the run's own ledger. An input that fails
any check is refused and recorded, and the run waits again.

Pausing is the orchestrator's (flows/retrain.py): review_candidate is handed a function that waits for one answer.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bayling.approvals import ledger
from bayling.approvals.decisions import DecisionRecord, apply_decision, now, record_refusal
from bayling.approvals.identity import verify_claimed
from bayling.approvals.review import review_markdown
from bayling.config.register import RegisterParams
from bayling.core.errors import PipelineError
from bayling.models.champion import alias_holder
from bayling.register.gate import RuleResult, markdown_table
from bayling.register.mlflow_user import Identity, current_identity

CHALLENGE_TAG = "approval.challenge"


class PauseAnswer(Protocol):
    """What a resumed pause carries (flows.retrain.ApprovalInput). Only `request`, the hash of a record in the
    approver's own ledger, can prove anything; the decision, note and override are read from that record."""

    identity: str
    authenticated: bool
    challenge: str
    request: str


# Shows `description` and waits under `key` for one answer, at most `timeout_s` seconds; None when the time runs out.
WaitForAnswer = Callable[[str, str, int], PauseAnswer | None]


def pause_key(model_name: str, version: str) -> str:
    """The key a retrain run pauses under while it waits for a decision on this version (attempts add -<n>)."""
    return f"approval-{model_name}-v{version}"


def request_record(version: str, decision: str, identity: Identity, challenge: str, flow_run_id: str, display_name: str, note: str,
                   override_gate: bool) -> dict[str, Any]:
    """What an approver writes into their own ledger to answer a paused run."""
    return {"kind": "request", "version": version, "decision": decision, "identity": identity.name,
            "authenticated": identity.authenticated, "challenge": challenge, "flow_run_id": flow_run_id, "display_name": display_name,
            "note": note, "override_gate": override_gate, "at": now()}


def verify_request(client: Any, model_name: str, tracking_uri: str, claimed: str, sha256: str, challenge: str,
                   version: str) -> tuple[dict[str, Any] | None, str]:
    """The request a pause input points at, if it is in the claimed user's own ledger, verifies, and
    answers this pause (its challenge and version); else (None, why not)."""
    entries = ledger.read_all(client, model_name, tracking_uri, owners={claimed})
    entry = ledger.find(entries, sha256, owner=claimed)
    if entry is None:
        return None, f"no request {sha256[:12]}… in {claimed}'s own ledger (only {claimed} can write it)"
    if entry.problems:
        return None, f"{claimed}'s request does not verify: {'; '.join(entry.problems)}"
    record = entry.record
    if record.get("kind") != "request" or record.get("challenge") != challenge or str(record.get("version")) != str(version):
        return None, "the request in the ledger is not for this pause (challenge or version differ)"
    return record, "verified"


@dataclass(frozen=True)
class _PausedVersion:
    """The version a paused run waits on, and what its records need: the run's own account records them."""

    client: Any
    model: str
    version: str
    settings: RegisterParams
    tracking_uri: str
    recorder: str
    flow_run_id: str
    experiment: str | None

    def time_out(self) -> None:
        self._apply("timeout", Identity("nobody", authenticated=False), note=f"no decision within {self.settings.approval.timeout_s}s")

    def decide(self, answer: PauseAnswer, challenge: str, logger: Any) -> dict[str, Any] | None:
        """Apply the decision `answer` points at, once it proves itself; None when it is refused (and recorded)."""
        identity, request = None, None
        if answer.challenge != challenge:
            reason = "the input does not carry this pause's challenge (resume with tools.approve)"
        else:
            request, reason = verify_request(self.client, self.model, self.tracking_uri, answer.identity, answer.request, challenge,
                                             self.version)
            if request is not None:
                identity, reason = verify_claimed(self.tracking_uri, answer.identity, answer.authenticated, self.model)
        if identity is None or request is None:
            self._refuse(answer.identity or "unknown", reason, answer.request)
            logger.warning("refused a decision claimed by %r: %s; waiting again", answer.identity, reason)
            return None
        try:  # the decision, note and override are the ledger's, never the resume input's
            record = self._apply(request["decision"], identity, display_name=request.get("display_name", ""), note=request.get("note", ""),
                                 override_gate=bool(request.get("override_gate")), request=answer.request)
        except PipelineError as exc:
            self._refuse(identity.name, str(exc), answer.request)
            logger.warning("refused %s's decision: %s; waiting again", identity.name, exc)
            return None
        moved = "champion moved" if record.champion_moved else "champion unchanged"
        logger.info("%s by %s: %s", record.decision, identity.describe(), moved)
        return {"decision": record.decision, "reviewer": identity.name, "previous_champion": record.previous_champion}

    def _apply(self, decision: Any, identity: Identity, **details: Any) -> DecisionRecord:
        return apply_decision(self.client, self.model, self.version, decision, identity, self.settings.approval,
                              flow_run_id=self.flow_run_id, champion_alias=self.settings.champion_alias, path="paused-run",
                              recorder=self.recorder, tracking_uri=self.tracking_uri, experiment=self.experiment, **details)

    def _refuse(self, claimed: str, reason: str, request: str) -> None:
        record_refusal(self.client, self.model, self.version, claimed, reason, self.flow_run_id, self.recorder, request)


def review_candidate(settings: RegisterParams, collected: dict[str, Any], tracking_uri: str, wait_for_answer: WaitForAnswer, logger: Any,
                     *, flow_run_id: str, experiment: str | None, report: str, cannot_pause: str | None) -> dict[str, Any] | None:
    """Put a registered candidate that passed the gate to a reviewer, and wait until a decision proves itself or
    register.approval.timeout_s runs out (a timeout leaves the champion). `collected` is the run summary's (register,
    eval, review); `cannot_pause` says why this run cannot wait for anyone (None when it can). Returns the outcome
    for the run's result, or None when nothing was put to a reviewer."""
    import mlflow

    registration = collected.get("register") or {}
    if not registration:
        return None
    gate = registration.get("gate", {})
    if not gate.get("passed", True):
        logger.warning("gate failed: version %s is not proposed; the champion stays", registration["version"])
        return {"decision": "gate_failed"}
    version, model = str(registration["version"]), registration["model_name"]
    approve_later = f"python -m tools.approve {version} --decision approve|reject [--by NAME]"
    if not settings.approval.required:
        return None
    client = mlflow.MlflowClient(tracking_uri)
    champion = alias_holder(client, model, settings.champion_alias)
    if champion is not None and str(champion.version) == version:
        logger.info("version %s already holds '%s' (same model files): nothing to decide", version, settings.champion_alias)
        return {"decision": "already_champion"}
    if cannot_pause:
        logger.info("%s; decide later with: %s", cannot_pause, approve_later)
        return None
    paused = _PausedVersion(client, model, version, settings, tracking_uri, current_identity(tracking_uri).name, flow_run_id, experiment)
    table = markdown_table([RuleResult(**r) for r in gate.get("rules", [])])
    description = review_markdown(registration, collected.get("eval") or {}, table, report, tracking_uri, collected.get("review"))
    deadline = time.monotonic() + settings.approval.timeout_s
    attempt = 0
    while True:
        attempt += 1
        challenge = secrets.token_hex(16)
        client.set_model_version_tag(model, version, CHALLENGE_TAG, challenge)
        answer = wait_for_answer(description, f"{pause_key(model, version)}-{attempt}", max(1, int(deadline - time.monotonic())))
        if answer is None:
            paused.time_out()
            logger.warning("no decision before the timeout: the champion stays")
            return {"decision": "timeout"}
        outcome = paused.decide(answer, challenge, logger)
        if outcome is not None:
            return outcome
