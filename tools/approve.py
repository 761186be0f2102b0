"""Decide on a registered candidate, as the MLflow user whose credentials are in the environment.

    python -m tools.approve VERSION --decision approve|reject [--by DISPLAY NAME] [--note TEXT] [--override-gate]
    python -m tools.approve --history VERSION

The reviewer is the identity the MLflow server authenticates (MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD), or, on a server without users, the OS user, recorded as unauthenticated.
`--by` only adds a display name. Deciding needs MANAGE on the registered model, as the server's
permissions say. With a Prefect server (PREFECT_API_URL) and a retrain run paused for VERSION, this
command writes the decision as a request into your own approval ledger (see README: who can write it), and
resumes the run with its hash. The run verifies the request and the identity before it moves the
champion, and this command waits (BAYLING_APPROVAL_WAIT_S, 120 s) to report what the run did.
Otherwise the decision is applied to the registry directly and recorded in your ledger. `--history`
lists every record on the version, and flags any that fails a check (bayling/approvals/ledger.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from bayling.core.errors import PipelineError
from bayling.core.paths import project_root

ROOT = project_root()


async def paused_run_for(key: str):  # type: ignore[no-untyped-def]
    """The paused flow run waiting under this pause key (or one of its later attempts), if any."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    try:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
            )
    except Exception as exc:  # httpx's and Prefect's own errors alike: the server is not there
        raise PipelineError(f"cannot ask the Prefect server at {os.environ.get('PREFECT_API_URL')} for paused runs "
                            f"({type(exc).__name__}); unset PREFECT_API_URL to decide on the registry directly") from None
    for run in runs:
        pause = run.state.state_details.pause_key if run.state and run.state.state_details else None
        if pause and (pause == key or pause.startswith(f"{key}-")):
            return run
    return None


def wait_for_outcome(client, model_name: str, uri: str, request: str, timeout_s: float) -> dict | None:  # type: ignore[no-untyped-def]
    """The paused run's answer to this request (an `applied` or `refused` record in its ledger), if it comes in time."""
    from bayling.approvals.trail import trail

    deadline = time.monotonic() + timeout_s
    while True:
        # a refusal is reported whoever wrote it (it moves nothing); an application only if it verifies
        answer = next((r for r in trail(client, model_name, uri, check_ownership=False) if r.get("request") == request
                       and (r.get("kind") == "refused" or (r.get("kind") == "applied" and not r["flags"]))), None)
        if answer is not None or time.monotonic() > deadline:
            return answer
        time.sleep(1.0)


def approve(version: str, decision: str, display_name: str = "", note: str = "", override_gate: bool = False) -> str:
    """Resume the run paused for `version` with this decision, or apply it to the registry; says which."""
    import mlflow

    from bayling.approvals import ledger
    from bayling.approvals.decisions import apply_decision
    from bayling.approvals.identity import MAX_DISPLAY_NAME, MAX_NOTE, clean_text, may_approve
    from bayling.approvals.paused_run import CHALLENGE_TAG, pause_key, request_record
    from bayling.config.loader import load_section
    from bayling.core.tracking import tracking_uri
    from bayling.register.mlflow_user import current_identity
    from bayling.register.verdict import canonical_version, version_number

    version_number(version)
    register = load_section("register", ROOT / "params.yaml")
    experiment = load_section("tracking", ROOT / "params.yaml").experiment
    uri = tracking_uri(ROOT)
    client = mlflow.MlflowClient(uri)
    display_name = clean_text(display_name, "--by", MAX_DISPLAY_NAME, one_line=True)
    note = clean_text(note, "--note", MAX_NOTE, one_line=False)
    identity = current_identity(uri)
    allowed, reason = may_approve(identity, uri, register.model_name)
    if not allowed:
        raise PipelineError(f"refused: {reason}")
    found = canonical_version(client, register.model_name, version)
    number = str(found.version)
    if os.environ.get("PREFECT_API_URL"):
        run = asyncio.run(paused_run_for(pause_key(register.model_name, number)))
        if run is not None:
            challenge = (found.tags or {}).get(CHALLENGE_TAG)
            if not challenge:
                raise PipelineError(f"flow run {run.name} is paused for version {number} but set no challenge; decide in the run itself")
            entry = ledger.append(client, register.model_name, identity.name,
                                  request_record(number, decision, identity, challenge, str(run.id), display_name, note, override_gate))
            from prefect.flow_runs import resume_flow_run

            resume_flow_run(run.id, run_input={
                "decision": decision, "identity": identity.name, "authenticated": identity.authenticated, "display_name": display_name,
                "note": note, "challenge": challenge, "override_gate": override_gate, "request": entry.sha256,
            })
            wait_s = float(os.environ.get("BAYLING_APPROVAL_WAIT_S", "120"))
            outcome = wait_for_outcome(client, register.model_name, uri, entry.sha256, wait_s)
            if outcome is None:
                return (f"resumed flow run {run.name} ({run.id}) with request {entry.sha256[:12]}… in {identity.name}'s ledger; the run "
                        f"has not answered yet: see `python -m tools.approve --history {number}`")
            if outcome["kind"] == "refused":
                raise PipelineError(f"flow run {run.name} refused the decision: {outcome.get('reason', '')}")
            moved = (f"'{register.champion_alias}' now points to version {outcome['champion_after']}"
                     if outcome.get("previous_champion") != outcome.get("champion_after") else f"'{register.champion_alias}' unchanged")
            return f"flow run {run.name} ({run.id}) verified and applied {decision} by {identity.describe()}; {moved}"
    record = apply_decision(client, register.model_name, number, decision, identity, register.approval, display_name=display_name,
                            note=note, champion_alias=register.champion_alias, override_gate=override_gate, tracking_uri=uri,
                            experiment=experiment)
    moved = (f"'{register.champion_alias}' now points to version {record.champion_after}" if record.champion_moved
             else f"'{register.champion_alias}' unchanged")
    return f"no paused run for version {number}: recorded {decision} by {identity.describe()} on the registry; {moved}"


def show_history(version: str) -> str:
    """One JSON line per record on the version; a record that fails a check is prefixed FLAGGED with why."""
    import mlflow

    from bayling.approvals.trail import history
    from bayling.config.loader import load_section
    from bayling.core.tracking import tracking_uri
    from bayling.register.mlflow_user import current_identity
    from bayling.register.verdict import version_number

    version_number(version)
    register = load_section("register", ROOT / "params.yaml")
    uri = tracking_uri(ROOT)
    current_identity(uri)  # a clear line when the server is down or wants credentials
    records = history(mlflow.MlflowClient(uri), register.model_name, version, uri)
    if not records:
        return f"no decisions recorded on {register.model_name} version {version}"
    lines = []
    for r in records:
        flags, checked = r.pop("flags", []), r.pop("checked", True)
        text = json.dumps({k: v for k, v in r.items() if k not in ("key",)}, ensure_ascii=False)
        if flags:
            lines.append(f"FLAGGED ({'; '.join(flags)}): {text}")
        else:
            lines.append(text if checked else f"UNCHECKED (only an admin may ask whether this ledger is its owner's alone): {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", nargs="?")
    parser.add_argument("--decision", choices=["approve", "reject"])
    parser.add_argument("--by", default="", help="a display name to record beside the authenticated identity")
    parser.add_argument("--note", default="")
    parser.add_argument("--override-gate", action="store_true", help="approve a version whose gate verdict is failed (recorded)")
    parser.add_argument("--history", metavar="VERSION", help="list every decision recorded on VERSION")
    args = parser.parse_args(argv)
    from mlflow.exceptions import MlflowException

    try:
        if args.history:
            print(show_history(args.history))
        elif args.version and args.decision:
            print(approve(args.version, args.decision, args.by, args.note, args.override_gate))
        else:
            parser.error("give VERSION --decision approve|reject, or --history VERSION")
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MlflowException as exc:  # a server error the steps above did not name
        print(f"error: MLflow failed: {getattr(exc, 'error_code', '')} {exc.message}".replace("\n", " ")[:2000], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
