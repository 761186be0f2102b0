"""Decide on a registered candidate: resume the retrain run that is paused for it, or act on the registry.

    python -m tools.approve VERSION --decision approve|reject --by NAME [--note TEXT] [--override-gate]

With a Prefect server (PREFECT_API_URL) and a retrain run paused for VERSION, the decision is sent as
that run's input and the run records it. Otherwise the decision is applied to the MLflow registry
directly: tags decision, reviewed_by, reviewed_at, flow_run_id, previous_champion and note on the
version, and on approve the champion alias moves to it. A version the gate failed is not approved
without --override-gate, and the override is recorded (tag gate_overridden_by).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bayling.core.errors import PipelineError
from bayling.core.paths import project_root

ROOT = project_root()


async def paused_run_for(key: str):  # type: ignore[no-untyped-def]
    """The paused flow run waiting with this pause key, if any."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
        )
    for run in runs:
        if run.state and run.state.state_details and run.state.state_details.pause_key == key:
            return run
    return None


def approve(version: str, decision: str, reviewer: str, note: str = "", override_gate: bool = False) -> str:
    """Resume the paused run for `version` with this decision, or apply it to the registry; says which."""
    import mlflow

    from bayling.config.loader import load_section
    from bayling.core.tracking import tracking_uri
    from bayling.register.approval import apply_decision, pause_key

    register = load_section("register", ROOT / "params.yaml")
    key = pause_key(register.model_name, version)
    if os.environ.get("PREFECT_API_URL"):
        run = asyncio.run(paused_run_for(key))
        if run is not None:
            from prefect.flow_runs import resume_flow_run

            resume_flow_run(run.id, run_input={"decision": decision, "reviewer": reviewer, "note": note})
            return f"resumed flow run {run.name} ({run.id}), which records the decision"
    client = mlflow.MlflowClient(tracking_uri(ROOT))
    record = apply_decision(client, register.model_name, version, decision, reviewer, note, "none", register.champion_alias,
                            override_gate=override_gate)
    moved = (
        f"'{register.champion_alias}' now points to version {version}"
        if record.champion_moved
        else f"'{register.champion_alias}' unchanged"
    )
    return f"no paused run for version {version}: recorded {decision} on the registry directly; {moved}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version")
    parser.add_argument("--decision", required=True, choices=["approve", "reject"])
    parser.add_argument("--by", required=True, help="who decides")
    parser.add_argument("--note", default="")
    parser.add_argument("--override-gate", action="store_true", help="approve a version that failed the gate (recorded)")
    args = parser.parse_args(argv)
    try:
        print(approve(args.version, args.decision, args.by, args.note, args.override_gate))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
