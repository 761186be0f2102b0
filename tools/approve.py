"""Decide on a registered candidate, as the MLflow user whose credentials are in the environment.

    python -m tools.approve VERSION --decision approve|reject [--by DISPLAY NAME] [--note TEXT] [--override-gate]
    python -m tools.approve --history VERSION

The reviewer is the identity the MLflow server authenticates (MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD), or, on a server without users, the OS user, recorded as unauthenticated.
`--by` only adds a display name. Deciding needs MANAGE on the registered model, as the server's
permissions say. With a Prefect server (PREFECT_API_URL) and a retrain run paused for VERSION, this
command proves that permission to the run by deleting the run's challenge tag on the version (which
the server allows only with MANAGE) and resumes it; the run checks the identity again before it moves
the champion. Otherwise the decision is applied to the registry directly. Every decision is recorded
on the version as its own tag; `--history` lists them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from bayling.core.errors import PipelineError
from bayling.core.paths import project_root

ROOT = project_root()


async def paused_run_for(key: str):  # type: ignore[no-untyped-def]
    """The paused flow run waiting under this pause key (or one of its later attempts), if any."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
        )
    for run in runs:
        pause = run.state.state_details.pause_key if run.state and run.state.state_details else None
        if pause and (pause == key or pause.startswith(f"{key}-")):
            return run
    return None


def approve(version: str, decision: str, display_name: str = "", note: str = "", override_gate: bool = False) -> str:
    """Resume the run paused for `version` with this decision, or apply it to the registry; says which."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from bayling.config.loader import load_section
    from bayling.core.tracking import tracking_uri
    from bayling.register.approval import CHALLENGE_TAG, apply_decision, canonical_version, pause_key
    from bayling.register.identity import MAX_DISPLAY_NAME, MAX_NOTE, clean_text, current_identity, may_approve

    register = load_section("register", ROOT / "params.yaml")
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
            try:  # only MANAGE may delete a model version tag: this is the proof the run checks
                client.delete_model_version_tag(register.model_name, number, CHALLENGE_TAG)
            except MlflowException as exc:
                if getattr(exc, "error_code", "") in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
                    raise PipelineError(f"refused: MLflow denied {identity.describe()} the MANAGE-only step on "
                                        f"{register.model_name}") from None
                raise PipelineError(f"MLflow failed: {exc.message}") from None
            from prefect.flow_runs import resume_flow_run

            resume_flow_run(run.id, run_input={
                "decision": decision, "identity": identity.name, "authenticated": identity.authenticated, "display_name": display_name,
                "note": note, "challenge": challenge, "override_gate": override_gate,
            })
            return f"resumed flow run {run.name} ({run.id}) as {identity.describe()}; it checks the identity and records the decision"
    record = apply_decision(client, register.model_name, number, decision, identity, register.approval, display_name=display_name,
                            note=note, champion_alias=register.champion_alias, override_gate=override_gate)
    moved = (f"'{register.champion_alias}' now points to version {record.champion_after}" if record.champion_moved
             else f"'{register.champion_alias}' unchanged")
    return f"no paused run for version {number}: recorded {decision} by {identity.describe()} on the registry; {moved}"


def show_history(version: str) -> str:
    import mlflow

    from bayling.config.loader import load_section
    from bayling.core.tracking import tracking_uri
    from bayling.register.approval import history

    register = load_section("register", ROOT / "params.yaml")
    records = history(mlflow.MlflowClient(tracking_uri(ROOT)), register.model_name, version)
    if not records:
        return f"no decisions recorded on {register.model_name} version {version}"
    return "\n".join(json.dumps({k: v for k, v in r.items() if k != "key"}, ensure_ascii=False) for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", nargs="?")
    parser.add_argument("--decision", choices=["approve", "reject"])
    parser.add_argument("--by", default="", help="a display name to record beside the authenticated identity")
    parser.add_argument("--note", default="")
    parser.add_argument("--override-gate", action="store_true", help="approve a version whose gate verdict is failed (recorded)")
    parser.add_argument("--history", metavar="VERSION", help="list every decision recorded on VERSION")
    args = parser.parse_args(argv)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
