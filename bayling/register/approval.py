"""Human approval of a registered candidate: who may decide, what the gate allows, and the trail.

The trail is the approvers' ledgers (bayling/register/ledger.py), not the version's tags, which any EDIT
holder can rewrite. The direct path writes one `decision` record into the decider's own ledger. A paused
retrain run is different. The approver writes a `request` record into their own ledger, and the run,
having verified it, writes an `applied` record into the run's own ledger. Summary tags on the version
(`decision`, `reviewed_by`, ...) only show the latest decision in the UI; nothing reads them back.

What a decision relies on is read from records no EDIT holder can change:
- the gate verdict, from the `gate_passed` params of every register run of the version's files;
- who registered the version, from its register run's `registered_by` param.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bayling.config.register import ApprovalParams
from bayling.core.errors import PipelineError
from bayling.core.metric_keys import AVERAGE, averages, changes_vs_base, score_keys
from bayling.models.champion import alias_holder
from bayling.register import ledger
from bayling.register.identity import APPROVER_PERMISSION, MAX_DISPLAY_NAME, MAX_NOTE, Identity, clean_text

Decision = Literal["approve", "reject", "timeout", "refused"]
LEGACY_DECISION_PREFIX = "decision."  # where decisions lived before the ledgers: now flagged, never trusted
CHALLENGE_TAG = "approval.challenge"
LOCK_SUFFIX = ".approval-lock"  # a registered model that exists only while someone moves the champion alias
LOCK_WAIT_S = 60.0


def pause_key(model_name: str, version: str) -> str:
    """The key a retrain run pauses under while it waits for a decision on this version (attempts add -<n>)."""
    return f"approval-{model_name}-v{version}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def version_number(version: str) -> int:
    """A version as typed ("01" is 1), or a clear error: only ASCII digits, which int() reads the same."""
    text = str(version).strip()
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise PipelineError(f"version {version!r} is not a version number (1, 2, ...)")
    return int(text)


def canonical_version(client: Any, model_name: str, version: str) -> Any:
    """The registered version object for a version number as typed ("01" is version 1), or a clear error."""
    from mlflow.exceptions import MlflowException

    number = version_number(version)
    try:
        return client.get_model_version(model_name, str(number))
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise PipelineError(f"MLflow refused to show {model_name} version {number}: "
                                f"{'permission denied' if code == 'PERMISSION_DENIED' else 'no valid credentials'}") from None
        if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise PipelineError(f"{model_name} has no version {number}") from None
        raise PipelineError(f"MLflow could not show {model_name} version {number}: {exc.message}") from None
    except Exception as exc:  # the server is down or unreachable: not a missing version
        raise PipelineError(f"cannot reach MLflow to read {model_name} version {number}: {type(exc).__name__}") from None


# ---------------------------------------------------------------- what the registry's immutable records say
def _source_run(client: Any, found: Any) -> Any | None:
    from mlflow.exceptions import MlflowException

    if not getattr(found, "run_id", None):
        return None
    try:
        return client.get_run(found.run_id)
    except MlflowException:
        return None


def _binding_problem(client: Any, model_name: str, found: Any, source: Any, experiment: str | None) -> str | None:
    """Why the version's register run cannot vouch for it, or None: the run must be in the tracking experiment,
    be a register run of this model, and have logged the very model the version serves."""
    from mlflow.exceptions import MlflowException

    if experiment is not None:
        tracking = client.get_experiment_by_name(experiment)
        if tracking is None or source.info.experiment_id != tracking.experiment_id:
            return f"its register run {source.info.run_id} is not in the tracking experiment {experiment!r}"
    if (source.data.params or {}).get("model_name") != model_name:
        return f"its register run {source.info.run_id} registered another model"
    uri = str(found.source or "")
    if uri.startswith("models:/"):
        try:
            logged = client.get_logged_model(uri.removeprefix("models:/").split("/")[0])
        except MlflowException:
            return f"the model it serves ({uri}) cannot be read"
        bound = logged.source_run_id == source.info.run_id
    elif uri.startswith("runs:/"):
        bound = uri.removeprefix("runs:/").split("/")[0] == source.info.run_id
    else:
        bound = uri.startswith(str(source.info.artifact_uri).rstrip("/") + "/")
    return None if bound else f"the model it serves ({uri}) was not logged by its register run {source.info.run_id}"


def gate_verdict(client: Any, model_name: str, found: Any, experiment: str | None = None) -> dict[str, Any]:
    """The version's gate verdict, from the `gate_passed` param of every register run of its files.

    The version's own register run must vouch for it (see _binding_problem), and the runs searched are those
    of the tracking experiment (`experiment`, by name) with the same model and model hash, deleted ones
    included. Params cannot be changed once logged. A version with no verdict at all (its register run
    stopped before the gate, or it was not made by the register stage) has not passed. One failure stands,
    whatever later runs say: a looser gate, or a re-run of evaluate on the same files, does not clear it.
    Approving such a version needs --override-gate, which is recorded.
    """
    from mlflow.entities import ViewType

    source = _source_run(client, found)
    sha = (source.data.params or {}).get("model_sha256") if source is not None else None
    if source is None or not sha:
        return {"passed": False, "evaluations": 0,
                "reason": f"{model_name} version {found.version} has no register run with a model hash, so no gate verdict"}
    problem = _binding_problem(client, model_name, found, source, experiment)
    if problem:
        return {"passed": False, "evaluations": 0, "reason": f"{model_name} version {found.version} has no gate verdict: {problem}"}
    same_files = f"params.model_sha256 = '{sha}' and params.model_name = '{model_name}'"

    def every(filter_string: str) -> list[Any]:
        found_runs, token = [], None
        while True:
            page = client.search_runs([source.info.experiment_id], filter_string=filter_string, run_view_type=ViewType.ALL,
                                      max_results=1000, page_token=token)
            found_runs += list(page)
            token = page.token
            if not token:
                return found_runs

    judged = [r for r in every(same_files) if "gate_passed" in (r.data.params or {})]
    if not judged:
        return {"passed": False, "evaluations": 0,
                "reason": f"no gate verdict was recorded for {model_name} version {found.version} (its register run stopped first)"}
    failed = [r.info.run_id for r in judged if r.data.params["gate_passed"] != "true"]
    verdict: dict[str, Any] = {"passed": not failed, "evaluations": len(judged), "failed_evaluations": len(failed)}
    if failed:
        verdict.update(failed_runs=failed[:10], reason=f"{model_name} version {found.version} failed the gate in register run(s) "
                                                       f"{', '.join(failed[:3])}")
    return verdict


def registered_by(client: Any, model_name: str, found: Any, experiment: str | None = None) -> str | None:
    """Who registered the version, from its register run's `registered_by` param (the tag is display only); None
    when that run does not vouch for the version."""
    source = _source_run(client, found)
    if source is None or _binding_problem(client, model_name, found, source, experiment):
        return None
    return (source.data.params or {}).get("registered_by")


# ---------------------------------------------------------------- the trail
def _legacy_tag_records(tags: dict[str, str]) -> list[dict[str, Any]]:
    found = []
    for key, value in sorted(tags.items()):
        if key.startswith(LEGACY_DECISION_PREFIX) and key.count(".") == 2:
            try:
                record = json.loads(value)
            except json.JSONDecodeError:
                record = {"unreadable": value[:200]}
            found.append({**(record if isinstance(record, dict) else {"unreadable": value[:200]}), "tag": key,
                          "flags": ["a decision tag on the version, not in any approver's ledger: not trusted (forged, or "
                                    "written before the ledgers)"]})
    return found


def _check_applied(entry: ledger.Entry, entries: list[ledger.Entry]) -> list[str]:
    """An `applied` record must answer a verified request, for the same version and decision, in the
    decider's own ledger."""
    record = entry.record
    request = ledger.find(entries, str(record.get("request", "")), owner=str(record.get("identity", "")))
    if request is None:
        return [f"it applies a request {str(record.get('request'))[:12]}… that is not in {record.get('identity')!r}'s ledger"]
    problems = [] if request.verified else ["the request it applies does not verify"]
    if request.owner != record.get("identity"):
        problems.append(f"the request it applies is in {request.owner!r}'s ledger, not {record.get('identity')!r}'s")
    if (request.record.get("version"), request.record.get("decision")) != (record.get("version"), record.get("decision")):
        problems.append("the request it applies was for another version or decision")
    return problems


def _unentitled_deciders(model_name: str, tracking_uri: str, entries: list[ledger.Entry]) -> dict[str, str]:
    """The deciders named in the records who may not decide, as far as the caller may ask the server (an
    admin about anyone, anyone about themselves): name -> why."""
    from bayling.register.identity import _LEVELS, current_identity, list_usernames, permission_on_model

    if not tracking_uri.startswith(("http://", "https://")):
        return {}
    me = current_identity(tracking_uri)
    if not me.authenticated:
        return {}
    admins = {u for u, admin in list_usernames(tracking_uri) if admin} if me.is_admin else set()
    named = {e.record.get("identity") for e in entries if e.record.get("kind") in ("decision", "request", "applied")}
    found = {}
    for name in sorted(n for n in named if isinstance(n, str) and n):
        if name in admins or not (me.is_admin or me.name == name):
            continue
        try:
            level = permission_on_model(tracking_uri, name, model_name)
        except PipelineError as exc:  # the server knows no such user, or will not say
            found[name] = f"cannot tell that {name} may decide: {exc}"
            continue
        if _LEVELS.get(level, 0) < _LEVELS[APPROVER_PERMISSION]:
            found[name] = f"{name} holds {level} on {model_name}, and deciding needs {APPROVER_PERMISSION}"
    return found


RUN_RECORDS = ("applied", "refused", "timeout")  # what only a retrain run writes, under its (admin) account


def trail(client: Any, model_name: str, tracking_uri: str, version: str | None = None, check_ownership: bool = True
          ) -> list[dict[str, Any]]:
    """The records on the model (or one version), oldest first, each with `ledger`, `sha256`, `flags` (empty
    when it verified) and `checked` (False where the caller may not ask the server whether the ledger is its
    owner's alone and the decider may decide: only an admin may ask about others); decision tags on the
    version that no ledger holds are listed, flagged."""
    from bayling.register.identity import current_identity, list_usernames

    entries = ledger.read_all(client, model_name, tracking_uri, check_ownership=check_ownership)
    unentitled = _unentitled_deciders(model_name, tracking_uri, entries) if check_ownership else {}
    users_server = tracking_uri.startswith(("http://", "https://")) and current_identity(tracking_uri).authenticated
    me = current_identity(tracking_uri) if users_server else None
    admins = {u for u, admin in list_usernames(tracking_uri) if admin} if users_server else set()
    number = str(version_number(version)) if version is not None else None
    applications: dict[str, int] = {}
    for entry in entries:
        if entry.record.get("kind") == "applied" and not entry.problems:
            applications[str(entry.record.get("request"))] = applications.get(str(entry.record.get("request")), 0) + 1
    rows = []
    for entry in entries:
        if number is not None and str(entry.record.get("version")) != number:
            continue
        flags = list(entry.problems)
        kind = entry.record.get("kind")
        if not entry.owner.isascii():
            flags.append(f"its ledger's owner {entry.owner.encode('ascii', 'backslashreplace').decode()} is not plain ASCII "
                         "(it may imitate another user's name)")
        if kind in ("decision", "request", "applied") and str(entry.record.get("identity")) in unentitled:
            flags.append(unentitled[str(entry.record["identity"])])
        if kind in RUN_RECORDS and users_server and entry.owner not in admins:
            flags.append(f"only a retrain run's admin account records {kind} decisions, and {entry.owner} is not an admin")
        if kind == "applied":
            flags += _check_applied(entry, entries)
            if applications.get(str(entry.record.get("request")), 0) > 1:
                flags.append("the request it applies was applied more than once")
        checked = not users_server or (me is not None and (me.is_admin or (me.name == entry.owner and kind in ("decision", "request"))))
        rows.append({**entry.record, "ledger": entry.owner, "sha256": entry.sha256, "flags": flags, "checked": checked})
    if number is not None:
        rows += [{**r, "checked": True} for r in _legacy_tag_records(dict(canonical_version(client, model_name, number).tags or {}))]
    return rows


def trusted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that verified, as far as the caller could check."""
    return [r for r in rows if not r.get("flags")]


def history(client: Any, model_name: str, version: str, tracking_uri: str = "") -> list[dict[str, Any]]:
    """Every decision recorded on the version (direct decisions, applied requests, refusals, timeouts), in order."""
    canonical_version(client, model_name, version)
    return [r for r in trail(client, model_name, tracking_uri, version) if r.get("kind") != "request"]


def _decided(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in trusted(rows) if r.get("kind") in ("decision", "applied")]


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
                decided = _decided(trail(client, model_name, tracking_uri, number))
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
