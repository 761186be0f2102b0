"""A paused run's side of an approval, without servers: what it puts to a reviewer, and that only an answer that
proves itself moves anything (the real ledgers and MLflow are tests/integration/test_approval.py's and
test_authorisation.py's)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

import bayling.approvals.paused_run as paused_run
from bayling.config.register import RegisterParams
from bayling.register.mlflow_user import Identity

MODEL = "paused-model"
REGISTRATION = {"model_name": MODEL, "version": "2", "run_id": "r", "gate": {"passed": True, "rules": []}}


@dataclass
class Answer:
    identity: str = "reviewer"
    authenticated: bool = True
    challenge: str = ""
    request: str = "sha-of-request"


class Registry:
    """Stands in for MLflow and for the checks that ask it: records what the run tags, applies and refuses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, champion: str | None = "1") -> None:
        self.tags: list[tuple[str, str, str, str]] = []
        self.applied: list[dict] = []
        self.refused: list[tuple[str, str]] = []
        import mlflow

        monkeypatch.setattr(mlflow, "MlflowClient", lambda uri: self)
        monkeypatch.setattr(paused_run, "alias_holder",
                            lambda client, model, alias: SimpleNamespace(version=champion) if champion else None)
        monkeypatch.setattr(paused_run, "current_identity", lambda uri: Identity("pipeline", authenticated=True, is_admin=True))
        monkeypatch.setattr(paused_run, "review_markdown", lambda *args: "the review")
        monkeypatch.setattr(paused_run, "apply_decision", self.apply)
        monkeypatch.setattr(paused_run, "record_refusal", self.refuse)
        monkeypatch.setattr(paused_run, "verify_request", self.verify_request)
        monkeypatch.setattr(paused_run, "verify_claimed",
                            lambda uri, name, authenticated, model: (Identity(name, authenticated=True), "holds MANAGE"))

    def set_model_version_tag(self, model: str, version: str, key: str, value: str) -> None:
        self.tags.append((model, version, key, value))

    def verify_request(self, client, model, uri, claimed, sha256, challenge, version):  # type: ignore[no-untyped-def]
        return {"decision": "approve", "note": "from the ledger", "override_gate": False}, "verified"

    def apply(self, client, model, version, decision, identity, settings, **details):  # type: ignore[no-untyped-def]
        self.applied.append({"decision": decision, "identity": identity.name, **details})
        return SimpleNamespace(decision=decision, champion_moved=decision == "approve", previous_champion="1")

    def refuse(self, client, model, version, claimed, reason, flow_run_id, recorder, request=""):  # type: ignore[no-untyped-def]
        self.refused.append((claimed, reason))


def review(registration: dict, wait, settings: dict | None = None, cannot_pause: str | None = None):  # type: ignore[no-untyped-def]
    register = RegisterParams.model_validate({"model_name": MODEL, "approval": {"required": True, "timeout_s": 60, **(settings or {})}})
    return paused_run.review_candidate(register, {"register": registration, "eval": {}}, "http://mlflow", wait, logging.getLogger("test"),
                                       flow_run_id="flow-run-1", experiment="tracking", report="report.html", cannot_pause=cannot_pause)


def never_called(*args):  # type: ignore[no-untyped-def]
    raise AssertionError("the run paused")


def test_nothing_is_put_to_a_reviewer_without_a_passed_gate_or_when_approval_is_off(monkeypatch):
    Registry(monkeypatch)
    assert review({}, never_called) is None
    assert review({**REGISTRATION, "gate": {"passed": False}}, never_called) == {"decision": "gate_failed"}
    assert review(REGISTRATION, never_called, {"required": False}) is None


def test_the_champion_itself_and_a_run_that_cannot_pause_are_not_put_to_a_reviewer(monkeypatch, caplog):
    Registry(monkeypatch, champion="2")
    assert review(REGISTRATION, never_called) == {"decision": "already_champion"}
    Registry(monkeypatch, champion="1")
    with caplog.at_level(logging.INFO, logger="test"):
        assert review(REGISTRATION, never_called, cannot_pause="no Prefect server (PREFECT_API_URL) to pause on") is None
    assert ("no Prefect server (PREFECT_API_URL) to pause on; decide later with: "
            "python -m tools.approve 2 --decision approve|reject [--by NAME]") in caplog.messages


def test_an_answer_without_this_pauses_challenge_is_refused_and_the_run_waits_again(monkeypatch):
    registry = Registry(monkeypatch)
    waits: list[tuple[str, str]] = []

    def wait(description: str, key: str, timeout_s: int) -> Answer:
        waits.append((description, key))
        challenge = registry.tags[-1][3]
        return Answer(challenge="stale" if len(waits) == 1 else challenge)

    outcome = review(REGISTRATION, wait)
    assert outcome == {"decision": "approve", "reviewer": "reviewer", "previous_champion": "1"}
    assert [key for _, key in waits] == [f"approval-{MODEL}-v2-1", f"approval-{MODEL}-v2-2"]
    assert waits[0][0] == "the review"
    assert registry.refused == [("reviewer", "the input does not carry this pause's challenge (resume with tools.approve)")]
    challenges = [value for _, _, key, value in registry.tags if key == paused_run.CHALLENGE_TAG]
    assert len(challenges) == 2 and challenges[0] != challenges[1]  # a fresh challenge for each pause
    # the decision and note are the ledger's request's; the run's own account records the application
    [applied] = registry.applied
    assert applied["note"] == "from the ledger" and applied["recorder"] == "pipeline" and applied["request"] == "sha-of-request"
    assert applied["path"] == "paused-run" and applied["experiment"] == "tracking"


def test_a_decision_the_registry_refuses_is_recorded_and_the_run_waits_again(monkeypatch):
    registry = Registry(monkeypatch)
    apply = registry.apply

    def refuse_first(*args, **details):  # type: ignore[no-untyped-def]
        if not registry.refused:
            raise paused_run.PipelineError("reviewer registered paused-model version 2 and may not decide on it")
        return apply(*args, **details)

    monkeypatch.setattr(paused_run, "apply_decision", refuse_first)
    outcome = review(REGISTRATION, lambda description, key, timeout_s: Answer(challenge=registry.tags[-1][3]))
    assert outcome["decision"] == "approve"
    assert registry.refused == [("reviewer", "reviewer registered paused-model version 2 and may not decide on it")]


def test_a_pause_that_times_out_records_a_timeout_and_leaves_the_champion(monkeypatch):
    registry = Registry(monkeypatch)
    assert review(REGISTRATION, lambda description, key, timeout_s: None) == {"decision": "timeout"}
    assert registry.applied == [{"decision": "timeout", "identity": "nobody", "note": "no decision within 60s",
                                 "flow_run_id": "flow-run-1", "champion_alias": "champion", "path": "paused-run",
                                 "recorder": "pipeline", "tracking_uri": "http://mlflow", "experiment": "tracking"}]
