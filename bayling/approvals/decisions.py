"""Deciding on a registered version: the decision record, and the champion alias moved as it says.

What a decision relies on is read from records no EDIT holder can change (bayling/register/verdict.py): the
version's gate verdict, and who registered it. The record goes into a ledger (bayling/approvals/ledger.py);
the alias moves under a lock, so two approvals never both read the same champion.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bayling.approvals import ledger
from bayling.approvals.identity import APPROVER_PERMISSION, MAX_DISPLAY_NAME, MAX_NOTE, clean_text
from bayling.approvals.trail import trail, trusted_decisions
from bayling.config.register import ApprovalParams
from bayling.core.errors import PipelineError
from bayling.models.champion import alias_holder
from bayling.register.mlflow_user import Identity
from bayling.register.verdict import canonical_version, gate_verdict, registered_by

Decision = Literal["approve", "reject", "timeout", "refused"]
LOCK_SUFFIX = ".approval-lock"  # a registered model that exists only while someone moves the champion alias
LOCK_WAIT_S = 60.0


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


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
    request: str = ""  # on the paused path: the sha256 of the approver's request record

    @property
    def champion_moved(self) -> bool:
        return self.previous_champion != self.champion_after

    def to_json(self, recorder: str) -> dict[str, Any]:
        kind = self.decision if self.decision in ("refused", "timeout") else ("applied" if self.request else "decision")
        return {"kind": kind, "recorded_by": recorder, **asdict(self)}


def _permission_error(exc: Exception, identity: Identity, what: str, model_name: str) -> PipelineError:
    return PipelineError(f"MLflow refused {identity.describe()} ({what} on {model_name}): permission denied; "
                         f"deciding needs {APPROVER_PERMISSION} on the registered model")


def record_decision(client: Any, model_name: str, version: Any, record: DecisionRecord, recorder: str) -> ledger.Entry:
    """Append the decision to the recorder's ledger, then set the summary tags the MLflow UI shows."""
    entry = ledger.append(client, model_name, recorder, record.to_json(recorder))
    summary = {"decision": record.decision, "reviewed_by": record.identity, "reviewed_at": record.at, "flow_run_id": record.flow_run_id,
               "reviewer_authenticated": str(record.authenticated).lower(), "reviewer_display": record.display_name,
               "previous_champion": record.previous_champion, "note": record.note, "decision_record": entry.sha256}
    if record.decision == "refused":
        summary = {"last_refusal": f"{record.at} {record.identity}: {record.reason}"[:1000]}
    for key, value in summary.items():
        client.set_model_version_tag(model_name, version.version, key, value)
    return entry


@contextmanager
def alias_lock(client: Any, model_name: str, holder: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the model's approval lock while the champion is read and moved and its tags written, so two
    approvals never both read the same champion. The lock is a registered model, `<model>.approval-lock`,
    which the server creates for one caller only; its `token` tag tells the holder's own lock from another's."""
    import logging
    import secrets

    from mlflow.exceptions import MlflowException

    name = model_name + LOCK_SUFFIX
    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.create_registered_model(name, tags={"holder": holder, "since": now(), "token": token},
                                           description="held while an approval moves the champion alias; deleted right after")
            break
        except MlflowException as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
            if time.monotonic() > deadline:
                try:
                    tags = client.get_registered_model(name).tags or {}
                except MlflowException:
                    tags = {}
                raise PipelineError(f"another approval of {model_name} has held the lock {name} since {tags.get('since', '?')} "
                                    f"({tags.get('holder', 'unknown')}); if that approval is gone, an admin deletes {name}") from None
            time.sleep(0.2)
    try:
        yield
    finally:
        try:
            client.delete_registered_model(name)
        except MlflowException as exc:  # the next approval would wait on it: say so, do not hide it
            logging.getLogger(__name__).warning("could not release the approval lock %s (%s); an admin deletes it", name,
                                                getattr(exc, "error_code", exc))


def apply_decision(
    client: Any, model_name: str, version: str, decision: Literal["approve", "reject", "timeout"], identity: Identity,
    settings: ApprovalParams, *, display_name: str = "", note: str = "", flow_run_id: str = "none", champion_alias: str = "champion",
    override_gate: bool = False, path: str = "direct", request: str = "", recorder: str | None = None, tracking_uri: str = "",
    experiment: str | None = None,
) -> DecisionRecord:
    """Record a decision on the version and move the champion alias as it says.

    Approve points the alias at the version (a version whose gate verdict is not a pass needs
    `override_gate`, recorded). Reject leaves the champion, unless the version is the champion: then
    `register.approval.reject_champion` says whether to refuse, clear the alias or give it back to the
    version it displaced. Timeout only records. With `separation_of_duties`, whoever registered the
    version may not decide on it. The caller has already checked that `identity` may decide; the record
    goes into `recorder`'s ledger (the decider's own, unless a paused run applies a verified request).
    """
    from mlflow.exceptions import MlflowException

    display_name = clean_text(display_name, "--by", MAX_DISPLAY_NAME, one_line=True)
    note = clean_text(note, "--note", MAX_NOTE, one_line=False)
    found = canonical_version(client, model_name, version)
    number = str(found.version)
    recorder = recorder or identity.name
    try:
        if settings.separation_of_duties and decision != "timeout":
            registrant = registered_by(client, model_name, found, experiment)
            if registrant is None:
                raise PipelineError(f"cannot tell who registered {model_name} version {number} (its register run records no "
                                    "registered_by), so register.approval.separation_of_duties refuses the decision")
            if registrant == identity.name:
                raise PipelineError(f"{identity.name} registered {model_name} version {number} and may not decide on it "
                                    "(register.approval.separation_of_duties)")
        verdict = gate_verdict(client, model_name, found, experiment) if decision == "approve" else {"passed": True}
        if decision == "approve" and not verdict["passed"] and not override_gate:
            raise PipelineError(f"{verdict['reason']}; approving it anyway needs --override-gate")
        with alias_lock(client, model_name, identity.name):
            holder = alias_holder(client, model_name, champion_alias)
            previous = str(holder.version) if holder is not None else "none"
            after = previous
            at = now()
            if decision == "approve":
                if previous == number:
                    raise PipelineError(f"{model_name} version {number} already holds '{champion_alias}'")
                client.set_registered_model_alias(model_name, champion_alias, number)
                after = number
            elif decision == "reject" and previous == number:
                if settings.reject_champion == "refuse":
                    raise PipelineError(f"{model_name} version {number} is the current '{champion_alias}'; rejecting it would leave the "
                                        "registry inconsistent (register.approval.reject_champion: refuse). Approve another version, "
                                        "or set reject_champion to clear or previous")
                decided = trusted_decisions(trail(client, model_name, tracking_uri, number))
                displaced = next((str(r.get("previous_champion")) for r in reversed(decided)
                                  if r.get("decision") == "approve" and r.get("champion_after") == number), "none")
                if displaced != "none" and (not _exists(client, model_name, displaced) or not gate_verdict(
                        client, model_name, canonical_version(client, model_name, displaced), experiment)["passed"]):
                    displaced = "none"  # gone, or never passed its gate: no champion rather than that one
                if settings.reject_champion == "previous" and displaced != "none":
                    client.set_registered_model_alias(model_name, champion_alias, displaced)
                    after = displaced
                else:
                    client.delete_registered_model_alias(model_name, champion_alias)
                    after = "none"
            record = DecisionRecord(number, decision, identity.name, identity.authenticated, display_name, at, flow_run_id, previous,
                                    after, note, path, gate_overridden=decision == "approve" and not verdict["passed"], request=request)
            try:
                record_decision(client, model_name, found, record, recorder)
            except PipelineError:
                if after != previous:  # an unrecorded move must not stand
                    if previous == "none":
                        client.delete_registered_model_alias(model_name, champion_alias)
                    else:
                        client.set_registered_model_alias(model_name, champion_alias, previous)
                raise
            if after != previous:  # inside the lock, so the next approval's tags come after these
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


def record_refusal(client: Any, model_name: str, version: str, claimed: str, reason: str, flow_run_id: str, recorder: str,
                   request: str = "") -> DecisionRecord:
    """A decision that was refused (no verifiable identity, or one that may not decide), kept in the
    recorder's ledger (the run's own account)."""
    found = canonical_version(client, model_name, version)
    record = DecisionRecord(str(found.version), "refused", claimed[:256], False, "", now(), flow_run_id, "", "", "", "paused-run",
                            reason=reason[:1000], request=request)
    record_decision(client, model_name, found, record, recorder)
    return record


def _exists(client: Any, model_name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model_name, version)
        return True
    except MlflowException:
        return False
