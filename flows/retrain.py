"""Prefect flow `retrain`: pull, skip if nothing changed, run the stages through DVC under one MLflow
parent run, push, then pause for a human decision on a candidate that passed the gate.

    python -m flows.retrain [-S section.key=value ...] [--stage NAME ...] [--force]

1. `dvc pull` from the default DVC remote, when one is configured (an S3 bucket through dvc-s3).
2. Nothing to do when every corpus source has the version the last fetch read (S3 ETag or sha256)
   and `dvc status` finds params, code and data unchanged: the run ends in a NothingToDo state.
3. Each stage runs as `dvc repro --single-item <stage>`, in order (the tokenizer audit, a DVC stage of its
   own, right after tokenize as part of that step); a held DVC lock or a dropped connection is retried.
   A changed S3 source forces fetch. `-S` overrides write params.yaml first, as `dvc exp run -S` does
   (values read as YAML 1.2), once every section with them merged in is valid: a refused override leaves
   params.yaml byte for byte as it was.
4. `dvc push --run-cache`, retried, to the same remote.
5. The MLflow parent run carries the git commit, the Prefect flow-run id and every DVC out's md5.
6. If the gate passed and register.approval.required, the run pauses for an ApprovalInput (decision,
   reviewer, note), showing metrics, the gate table and the report path; `python -m tools.approve`
   or the Prefect UI resumes it. Approve moves the champion alias; reject and timeout leave it.
   Pausing needs a Prefect server (PREFECT_API_URL); with the ephemeral API the run ends and says
   how to approve later.

Exit code 0 (done, or nothing to do), 1 (a stage or DVC transfer failed), 2 (refused) or 130 (Ctrl-C), as
flows/runtime/exits.py defines them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect import flow, get_run_logger, runtime, task
from prefect.input import RunInput
from prefect.states import Completed, Failed, State

from bayling.config.loader import load_all
from bayling.core.errors import PipelineError
from bayling.core.paths import project_root
from bayling.register import summary as run_summary
from flows.runtime.dvc_runner import TAIL_LINES, dvc, retry_transient
from flows.runtime.exits import DONE, exit_code, refused
from flows.runtime.interruption import INTERRUPTION
from flows.runtime.prefect_server import flow_session

ROOT = project_root()


def step_stages(root: Path = ROOT) -> dict[str, list[str]]:
    """Each step of the pipeline and the dvc.yaml stages it runs, in the order written there (which is the order
    they depend on each other): a stage with `meta: {step: NAME}` runs within step NAME, after it (the tokenizer
    audit within tokenize), and is no step of its own."""
    steps: dict[str, list[str]] = {}
    for name, stage in ((yaml.safe_load((root / "dvc.yaml").read_text("utf-8")) or {}).get("stages") or {}).items():
        steps.setdefault(((stage or {}).get("meta") or {}).get("step", name), []).append(name)
    return steps


def pipeline_stages(root: Path = ROOT) -> list[str]:
    """The pipeline's steps, the stages a user runs and sees: dvc.yaml's, less those run within another step."""
    return list(step_stages(root))


STAGES = pipeline_stages()
class ApprovalInput(RunInput):
    """What tools.approve sends a paused run. Nothing here is trusted as it stands: see bayling/approvals/paused_run.py."""

    decision: Literal["approve", "reject"]
    identity: str  # the MLflow user the approver's credentials authenticated as
    authenticated: bool = True
    display_name: str = ""
    note: str = ""
    challenge: str = ""  # the challenge tag's value this pause set
    override_gate: bool = False
    request: str = ""  # sha256 of the request record tools.approve wrote into the approver's own ledger


def default_remote() -> str | None:
    code, lines = dvc("remote", "default", log_lines=False)
    return lines[-1].strip() if code == 0 and lines else None


def _delays(variable: str, default: str) -> list[float]:
    return [float(x) for x in os.environ.get(variable, default).split(",") if x.strip()]


# Backoff between attempts at a DVC remote; BAYLING_SYNC_RETRY_DELAYS="5,15,45" sets both count and waits.
SYNC_RETRY_DELAYS = _delays("BAYLING_SYNC_RETRY_DELAYS", "5,15,45")


@task(retries=len(SYNC_RETRY_DELAYS), retry_delay_seconds=SYNC_RETRY_DELAYS or 0, retry_condition_fn=retry_transient,
      task_run_name="dvc-{action}")
def sync(action: Literal["pull", "push"]) -> dict | State:
    """dvc pull (missing cache entries allowed) or dvc push with the run-cache; transient S3 errors are retried."""
    args = ["pull", "--allow-missing"] if action == "pull" else ["push", "--run-cache"]
    if action == "pull" and not (ROOT / "dvc.lock").exists():
        get_run_logger().info("no dvc.lock yet: nothing recorded to pull")
        return {"action": action, "seconds": 0.0}
    started = time.perf_counter()
    code, output = dvc(*args)
    # With --allow-missing, DVC reports an unreachable remote as an ERROR line yet exits 0.
    if code != 0 or any(line.startswith("ERROR:") for line in output):
        return Failed(message=f"dvc {action} failed (exit {code}):\n" + "\n".join(output[-TAIL_LINES:]))
    return {"action": action, "seconds": round(time.perf_counter() - started, 2)}


@task(retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=retry_transient, task_run_name="dvc-repro-{stage}")
def repro_stage(stage: str, force: bool = False, parent_run_id: str | None = None) -> dict | State:
    """One step: its dvc.yaml stage, then any that run within it (step_stages)."""
    started, ran = time.perf_counter(), False
    for name in step_stages().get(stage, [stage]):
        code, output = dvc("repro", "--single-item", name, *(["--force"] if force else []), parent_run_id=parent_run_id)
        if INTERRUPTION.requested:
            return Failed(message=f"interrupted during stage '{name}'; what finished stays in DVC's cache, and the next run "
                                  "resumes from there")
        if code != 0:
            # A failed state with the stage's own last lines, not a traceback of this wrapper.
            return Failed(message=f"stage '{name}' failed (exit {code}):\n" + "\n".join(output[-TAIL_LINES:]))
        ran = ran or not any("didn't change, skipping" in line for line in output)
    return {"stage": stage, "ran": ran, "seconds": round(time.perf_counter() - started, 2)}


@task(task_run_name="check-upstream")
def nothing_changed(params: dict) -> tuple[bool, list[str], str] | State:
    """(whether the run can stop, sources whose upstream version changed, the reason in words); a failed state
    for a source that cannot be read (no S3 credentials, no such bucket): raised, it would be logged with a
    traceback."""
    from bayling.fetch.versions import changed_sources, current_versions, recorded_versions

    manifest_path = ROOT / "data" / "raw" / "manifest.json"
    try:
        current = current_versions(params["fetch"], ROOT)
    except PipelineError as exc:
        return refused(exc)
    recorded = recorded_versions(json.loads(manifest_path.read_text("utf-8"))) if manifest_path.exists() else {}
    changed = changed_sources(current, recorded)
    code, lines = dvc("status", log_lines=False)
    up_to_date = code == 0 and any("Data and pipelines are up to date" in line for line in lines)
    if changed:
        return False, changed, f"{len(changed)} source(s) changed upstream: {', '.join(changed)}"
    if not up_to_date:
        return False, [], "dvc status: " + "; ".join(line.strip() for line in lines[:8])
    return True, [], "every source has the version the last fetch read, and dvc status finds nothing changed"


@flow(name="retrain")
def retrain(stages: list[str] | None = None, force: bool = False, overrides: dict[str, Any] | None = None,
            wait_for_checkout_s: float = 0.0) -> dict | State:
    """Pull, skip if unchanged, run the stages through DVC under one MLflow parent run, push, ask for approval.

    One run at a time holds the checkout (flows.runtime.checkout); another waits `wait_for_checkout_s`
    seconds for it, then refuses.
    """
    from flows.runtime.checkout import hold_checkout

    flow_run_id = str(runtime.flow_run.id or "none")
    try:
        with hold_checkout(ROOT, flow_run_id, wait_for_checkout_s, on_wait=get_run_logger().warning):
            return _retrain(stages, force, overrides, flow_run_id)
    except PipelineError as exc:
        return refused(exc)


def _retrain(stages: list[str] | None, force: bool, overrides: dict[str, Any] | None, flow_run_id: str) -> dict | State:
    import mlflow

    from bayling.config.overrides import apply_overrides
    from bayling.core.lineage import dvc_lock_outs, git_state
    from bayling.core.tracking import close_orphaned_runs, configure, process_tags, tracking_uri

    logger = get_run_logger()
    started = time.perf_counter()
    apply_overrides(ROOT / "params.yaml", overrides or {})
    params = load_all(ROOT / "params.yaml")
    wanted = check_stages(stages)
    remote = default_remote()
    if remote:
        pulled = sync("pull", return_state=True)
        if pulled.is_failed():
            return Failed(message=pulled.message)
    else:
        logger.info("no default DVC remote: nothing to pull or push (dvc remote add -d NAME s3://bucket/path)")
    if not force and stages is None:
        checked = nothing_changed(params, return_state=True)
        if checked.is_failed():  # a refusal (a source it cannot read) stays one
            return Failed(message=checked.message, name=checked.name)
        stop, changed, reason = checked.result()
        if stop:
            logger.info("nothing to do: %s", reason)
            return Completed(message=f"nothing to do: {reason}", name="NothingToDo", data={"nothing_to_do": reason})
        logger.info("running: %s", reason)
    else:
        changed = []
    experiment_id = configure(ROOT, params["tracking"].experiment)
    client = mlflow.MlflowClient()
    for orphan in close_orphaned_runs(client, experiment_id):
        logger.warning("MLflow run %s was left RUNNING by a process that is gone (killed?): ended as KILLED", orphan)
    git = git_state(ROOT)
    parent = client.create_run(experiment_id, run_name="retrain", tags={
        **process_tags(), "pipeline.flow": "retrain", "prefect.flow_run_id": flow_run_id, "git_commit": git["commit"],
        "git_dirty": str(git["dirty"]).lower(), **{f"override.{k}": str(v) for k, v in (overrides or {}).items()},
    })
    results: list[dict] = []
    failure: str | None = None
    status = "KILLED"  # unless the loop below ends by itself: an interrupt or a crash of this process
    try:
        for stage in wanted:
            state = repro_stage(stage, force or (stage == "fetch" and bool(changed)), parent.info.run_id, return_state=True)
            if state.is_failed():
                failure = state.message
                break
            results.append(state.result())
        if failure is None and remote:
            pushed = sync("push", return_state=True)
            if pushed.is_failed():
                failure = pushed.message
        status = "KILLED" if INTERRUPTION.requested else "FAILED" if failure else "FINISHED"
    finally:
        with contextlib.suppress(Exception):  # the run's own outcome matters more than its last tags
            for path, md5 in dvc_lock_outs(ROOT).items():
                client.set_tag(parent.info.run_id, f"dvc.{path}.md5", md5)
        client.set_terminated(parent.info.run_id, status)
    if failure:
        return Failed(message=failure)
    collected = run_summary.collect(ROOT)
    for key, value in (collected.get("eval") or {}).items():
        if ".avg." in key and isinstance(value, (int, float)):
            client.log_metric(parent.info.run_id, key, value)
    text = run_summary.render(collected, results, tracking_uri(ROOT), time.perf_counter() - started)
    logger.info("run summary\n%s", text)
    decision = request_approval(params, collected, flow_run_id) if "register" in wanted else None
    return {"parent_run_id": parent.info.run_id, "stages": results, "summary": text, "decision": decision, **collected}


def request_approval(params: dict, collected: dict, flow_run_id: str) -> dict | None:
    """Pause for a reviewer when the candidate passed the gate, and act only on a decision that proves itself.

    The pausing is Prefect's and lives here: each wait shows the review and takes an ApprovalInput under a fresh
    key. What the run proposes, and the checks every answer must pass before anything moves, are
    bayling/approvals/paused_run.py's (review_candidate).
    """
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from bayling.approvals.paused_run import review_candidate
    from bayling.core.tracking import tracking_uri

    def wait_for_answer(description: str, key: str, timeout_s: int) -> ApprovalInput | None:
        try:
            return pause_flow_run(wait_for_input=ApprovalInput.with_initial_data(description=description, decision="reject", identity=""),
                                  timeout=timeout_s, poll_interval=int(os.environ.get("BAYLING_APPROVAL_POLL_S", "10")), key=key)
        except FlowPauseTimeout:
            return None

    return review_candidate(params["register"], collected, tracking_uri(ROOT), wait_for_answer, get_run_logger(), flow_run_id=flow_run_id,
                            experiment=params["tracking"].experiment if "tracking" in params else None,
                            report=str(ROOT / "reports" / "eval" / "report.html"),
                            cannot_pause=None if os.environ.get("PREFECT_API_URL") else "no Prefect server (PREFECT_API_URL) to pause on")


def check_stages(stages: list[str] | None) -> list[str]:
    wanted = stages or STAGES
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise PipelineError(f"unknown stage(s) {unknown}; choose from {STAGES}")
    return wanted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "-S", "--set-param", action="append", default=[], metavar="KEY=VALUE", help="override params.yaml, as dvc exp run -S"
    )
    parser.add_argument("--stage", action="append", choices=STAGES, help="run only these stages (repeatable)")
    parser.add_argument("--force", action="store_true", help="re-run stages even when DVC says they are up to date")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long for another run in this checkout to finish, instead of refusing at once")
    args = parser.parse_args(argv)
    return exit_code(lambda: _run(args), _report,
                     interrupted="interrupted; what finished stays in DVC's cache, and the next run resumes from there")


def _run(args: argparse.Namespace) -> State:
    from bayling.config.overrides import apply_overrides, parse_override

    overrides = {".".join(path): value for path, value in map(parse_override, args.set_param)}
    # refuse bad params, with the overrides merged in, before starting Prefect at all; the flow writes them
    if overrides:
        apply_overrides(ROOT / "params.yaml", overrides, dry_run=True)
    else:
        load_all(ROOT / "params.yaml")
    check_stages(args.stage)
    with flow_session(ROOT):
        return retrain(stages=args.stage, force=args.force, overrides=overrides or None, wait_for_checkout_s=args.wait,
                       return_state=True)


def _report(state: State) -> int:
    if state.name == "NothingToDo":
        print(state.message, flush=True)
    else:
        print("\n" + state.result()["summary"], flush=True)
    return DONE


if __name__ == "__main__":
    sys.exit(main())
