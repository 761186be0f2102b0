"""The approval trail as read back: every record in the model's approval ledgers, each flagged with what it fails.

The trail is the approvers' ledgers (bayling/approvals/ledger.py), not the version's tags, which any EDIT
holder can rewrite. The direct path writes one `decision` record into the decider's own ledger. A paused
retrain run is different. The approver writes a `request` record into their own ledger, and the run,
having verified it, writes an `applied` record into the run's own ledger. Summary tags on the version
(`decision`, `reviewed_by`, ...) only show the latest decision in the UI; nothing reads them back.
"""

from __future__ import annotations

import json
from typing import Any

from bayling.approvals import ledger
from bayling.approvals.identity import APPROVER_PERMISSION, PERMISSION_LEVELS, list_usernames, permission_on_model
from bayling.core.errors import PipelineError
from bayling.register.mlflow_user import current_identity
from bayling.register.verdict import canonical_version, version_number

LEGACY_DECISION_PREFIX = "decision."  # where decisions lived before the ledgers: now flagged, never trusted


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
        if PERMISSION_LEVELS.get(level, 0) < PERMISSION_LEVELS[APPROVER_PERMISSION]:
            found[name] = f"{name} holds {level} on {model_name}, and deciding needs {APPROVER_PERMISSION}"
    return found


RUN_RECORDS = ("applied", "refused", "timeout")  # what only a retrain run writes, under its (admin) account


def trail(client: Any, model_name: str, tracking_uri: str, version: str | None = None, check_ownership: bool = True
          ) -> list[dict[str, Any]]:
    """The records on the model (or one version), oldest first, each with `ledger`, `sha256`, `flags` (empty
    when it verified) and `checked` (False where the caller may not ask the server whether the ledger is its
    owner's alone and the decider may decide: only an admin may ask about others); decision tags on the
    version that no ledger holds are listed, flagged."""
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


def trusted_decisions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in trusted(rows) if r.get("kind") in ("decision", "applied")]
