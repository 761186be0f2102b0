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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect import flow, get_run_logger, runtime, task
from prefect.input import RunInput
from prefect.states import Completed, Failed, State

from bayling.config.loader import load_all
from bayling.core import progress
from bayling.core.errors import PipelineError
from bayling.core.paths import project_root
from bayling.register import summary as run_summary

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
# Failures worth another attempt, as the tools print them: DVC's held locks, dropped or refused
# connections, timeouts and throttling from S3 or the tracking server. Matched as whole messages, so a
# stage that merely logs "503 segments" or "timed out waiting for a reviewer" is not retried.
TRANSIENT_ERRORS = re.compile("|".join([
    r"Unable to acquire lock\. Most likely another DVC process",
    r"'[^']+' is busy, it is being blocked by",
    r"database is locked",
    r"Connection reset by peer",
    r"Connection refused",
    r"Could not connect to the endpoint URL",
    r"EndpointConnectionError",
    r"Max retries exceeded with url",
    r"Read timed out\.",
    r"(Connect|Read) timeout on endpoint URL",
    r"An error occurred \((SlowDown|InternalError|ServiceUnavailable|RequestTimeout|Throttling|50[0234])\) when calling",
    r"HTTP Error 50[234]",
    r"\b50[234] (Service Unavailable|Bad Gateway|Gateway Time-?out)\b",
]))
TAIL_LINES = 30
PROGRESS_BAR = re.compile(r"\d+%\|")
# DVC's git hints are meant for someone at a shell, not for an orchestrated run.
DVC_HINTS = ("To track the changes with git", "To enable auto staging", "dvc config core.autostage", "git add ", "Use `dvc push`")


class ApprovalInput(RunInput):
    """What tools.approve sends a paused run. Nothing here is trusted as it stands: see request_approval."""

    decision: Literal["approve", "reject"]
    identity: str  # the MLflow user the approver's credentials authenticated as
    authenticated: bool = True
    display_name: str = ""
    note: str = ""
    challenge: str = ""  # the challenge tag's value this pause set
    override_gate: bool = False
    request: str = ""  # sha256 of the request record tools.approve wrote into the approver's own ledger


def _is_transient(message: str | None) -> bool:
    return TRANSIENT_ERRORS.search(message or "") is not None


def _retry_transient(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    return _is_transient(state.message) and not INTERRUPTION.requested


def stage_env(parent_run_id: str | None = None) -> dict[str, str]:
    """The environment DVC runs stage commands in: this interpreter's bin first, so `python` is ours, and
    this flow run's MLflow parent run, which the stages' own runs hang under."""
    from bayling.core.tracking import PARENT_RUN_ENV

    env = dict(os.environ)
    env.pop(PARENT_RUN_ENV, None)
    if parent_run_id:
        env[PARENT_RUN_ENV] = parent_run_id
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["BAYLING_ROOT"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"  # stage logs reach the flow's log as they happen
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # Stages report progress as event lines, which dvc() turns into a Prefect progress artifact per stage.
    env[progress.MODE_ENV] = "off" if os.environ.get(progress.MODE_ENV) == "off" else "events"
    return env


class Interruption:
    """Ctrl-C, as a terminal sends it: SIGINT to the whole foreground process group, so the DVC command
    and the stage it runs receive it too. The first one lets the running command stop by itself (the
    stage ends its MLflow run as failed, DVC keeps what finished) and the flow ends with the run marked
    KILLED; with no command running, or at a second Ctrl-C, the flow stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.child: subprocess.Popen | None = None

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested or self.child is None or self.child.poll() is not None:
            raise KeyboardInterrupt
        self.requested = True
        print("interrupted: stopping the running stage (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)


INTERRUPTION = Interruption()


def dvc(*args: str, log_lines: bool = True, parent_run_id: str | None = None, cwd: Path = ROOT,
        env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run a DVC command in the project (or in `cwd` with `env`: flows.reproduce's work tree), streaming its
    output to the run log; returns (code, lines).

    For `repro --single-item STAGE`, the stage's progress events become the artifact progress-STAGE."""
    logger = get_run_logger()
    stage = args[args.index("--single-item") + 1] if args[:1] == ("repro",) and "--single-item" in args else None
    watch = progress.StageWatch(stage, logger.info, progress.PrefectProgressArtifact(stage) if stage else None)
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env or stage_env(parent_run_id), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    INTERRUPTION.child = proc
    output: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if watch.feed(line):
                continue
            if line and not PROGRESS_BAR.search(line) and not line.lstrip().startswith(DVC_HINTS):
                output.append(line)
                if log_lines:
                    logger.info(line)
        code = proc.wait()
        watch.finish(succeeded=code == 0 and not INTERRUPTION.requested)
        return code, output
    finally:
        INTERRUPTION.child = None
        if proc.poll() is None:  # stopped at once: do not leave DVC holding its lock
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def default_remote() -> str | None:
    code, lines = dvc("remote", "default", log_lines=False)
    return lines[-1].strip() if code == 0 and lines else None


def _delays(variable: str, default: str) -> list[float]:
    return [float(x) for x in os.environ.get(variable, default).split(",") if x.strip()]


# Backoff between attempts at a DVC remote; BAYLING_SYNC_RETRY_DELAYS="5,15,45" sets both count and waits.
SYNC_RETRY_DELAYS = _delays("BAYLING_SYNC_RETRY_DELAYS", "5,15,45")


@task(retries=len(SYNC_RETRY_DELAYS), retry_delay_seconds=SYNC_RETRY_DELAYS or 0, retry_condition_fn=_retry_transient,
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


@task(retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=_retry_transient, task_run_name="dvc-repro-{stage}")
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
        return Failed(message=str(exc))
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

    One run at a time holds the checkout (bayling.core.checkout); another waits `wait_for_checkout_s`
    seconds for it, then refuses.
    """
    from bayling.core.checkout import hold_checkout

    flow_run_id = str(runtime.flow_run.id or "none")
    try:
        with hold_checkout(ROOT, flow_run_id, wait_for_checkout_s, on_wait=get_run_logger().warning):
            return _retrain(stages, force, overrides, flow_run_id)
    except PipelineError as exc:
        return Failed(message=str(exc))


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
        if checked.is_failed():
            return Failed(message=checked.message)
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

    Before each pause the run sets a fresh challenge tag on the version. `tools.approve` writes a request
    record (decision, note, this challenge) into the approver's own ledger, which only the approver can
    write (bayling/register/ledger.py), and resumes the run with that record's hash. The run then checks,
    with its own (admin) credentials:
    - that the record is in the named user's ledger and verifies;
    - that it answers this pause;
    - that the ledger is the user's alone;
    - that the user may decide.
    Only then does it apply the decision, recorded as `applied` in the run's own ledger. An input that fails
    any check is refused and recorded, and the run waits again.
    """
    import secrets

    import mlflow
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from bayling.core.tracking import tracking_uri
    from bayling.register.approval import CHALLENGE_TAG, apply_decision, pause_key, record_refusal, review_markdown, verify_request
    from bayling.register.champion import alias_holder
    from bayling.register.gate import RuleResult, markdown_table
    from bayling.register.identity import Identity, current_identity, verify_claimed

    logger = get_run_logger()
    registration = collected.get("register") or {}
    settings = params["register"]
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
    uri = tracking_uri(ROOT)
    client = mlflow.MlflowClient(uri)
    champion = alias_holder(client, model, settings.champion_alias)
    if champion is not None and str(champion.version) == version:
        logger.info("version %s already holds '%s' (same model files): nothing to decide", version, settings.champion_alias)
        return {"decision": "already_champion"}
    if not os.environ.get("PREFECT_API_URL"):
        logger.info("no Prefect server (PREFECT_API_URL) to pause on; decide later with: %s", approve_later)
        return None
    own = current_identity(uri).name  # the run's own account: its records go into its own ledger
    experiment = params["tracking"].experiment if "tracking" in params else None
    table = markdown_table([RuleResult(**r) for r in gate.get("rules", [])])
    report = str(ROOT / "reports" / "eval" / "report.html")
    description = review_markdown(registration, collected.get("eval") or {}, table, report, uri, collected.get("review"))
    poll = int(os.environ.get("BAYLING_APPROVAL_POLL_S", "10"))
    deadline = time.monotonic() + settings.approval.timeout_s
    attempt = 0
    while True:
        attempt += 1
        challenge = secrets.token_hex(16)
        client.set_model_version_tag(model, version, CHALLENGE_TAG, challenge)
        try:
            answer = pause_flow_run(
                wait_for_input=ApprovalInput.with_initial_data(description=description, decision="reject", identity=""),
                timeout=max(1, int(deadline - time.monotonic())), poll_interval=poll, key=f"{pause_key(model, version)}-{attempt}",
            )
        except FlowPauseTimeout:
            apply_decision(client, model, version, "timeout", Identity("nobody", authenticated=False), settings.approval,
                           note=f"no decision within {settings.approval.timeout_s}s", flow_run_id=flow_run_id,
                           champion_alias=settings.champion_alias, path="paused-run", recorder=own, tracking_uri=uri,
                           experiment=experiment)
            logger.warning("no decision before the timeout: the champion stays")
            return {"decision": "timeout"}
        identity, request = None, None
        if answer.challenge != challenge:
            reason = "the input does not carry this pause's challenge (resume with tools.approve)"
        else:
            request, reason = verify_request(client, model, uri, answer.identity, answer.request, challenge, version)
            if request is not None:
                identity, reason = verify_claimed(uri, answer.identity, answer.authenticated, model)
        if identity is None or request is None:
            record_refusal(client, model, version, answer.identity or "unknown", reason, flow_run_id, own, answer.request)
            logger.warning("refused a decision claimed by %r: %s; waiting again", answer.identity, reason)
            continue
        try:  # the decision, note and override are the ledger's, never the resume input's
            record = apply_decision(client, model, version, request["decision"], identity, settings.approval,
                                    display_name=request.get("display_name", ""), note=request.get("note", ""), flow_run_id=flow_run_id,
                                    champion_alias=settings.champion_alias, override_gate=bool(request.get("override_gate")),
                                    path="paused-run", request=answer.request, recorder=own, tracking_uri=uri, experiment=experiment)
        except PipelineError as exc:
            record_refusal(client, model, version, identity.name, str(exc), flow_run_id, own, answer.request)
            logger.warning("refused %s's decision: %s; waiting again", identity.name, exc)
            continue
        moved = "champion moved" if record.champion_moved else "champion unchanged"
        logger.info("%s by %s: %s", record.decision, identity.describe(), moved)
        return {"decision": record.decision, "reviewer": identity.name, "previous_champion": record.previous_champion}


def check_stages(stages: list[str] | None) -> list[str]:
    wanted = stages or STAGES
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise PipelineError(f"unknown stage(s) {unknown}; choose from {STAGES}")
    return wanted


def main(argv: list[str] | None = None) -> int:
    from bayling.config.overrides import apply_overrides, parse_override

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "-S", "--set-param", action="append", default=[], metavar="KEY=VALUE", help="override params.yaml, as dvc exp run -S"
    )
    parser.add_argument("--stage", action="append", choices=STAGES, help="run only these stages (repeatable)")
    parser.add_argument("--force", action="store_true", help="re-run stages even when DVC says they are up to date")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long for another run in this checkout to finish, instead of refusing at once")
    args = parser.parse_args(argv)
    try:
        overrides = {".".join(path): value for path, value in map(parse_override, args.set_param)}
        # refuse bad params, with the overrides merged in, before starting Prefect at all; the flow writes them
        if overrides:
            apply_overrides(ROOT / "params.yaml", overrides, dry_run=True)
        else:
            load_all(ROOT / "params.yaml")
        check_stages(args.stage)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bayling.core.orchestration import prefect_api

    signal.signal(signal.SIGINT, INTERRUPTION.handle)
    try:
        with prefect_api(ROOT / ".bayling" / "prefect-server.log"):
            state = retrain(stages=args.stage, force=args.force, overrides=overrides or None, wait_for_checkout_s=args.wait,
                            return_state=True)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; what finished stays in DVC's cache, and the next run resumes from there", file=sys.stderr)
        return 130
    if state.is_failed():
        print(f"error: {state.message}", file=sys.stderr)
        return 130 if INTERRUPTION.requested else 1
    if state.name == "NothingToDo":
        print(state.message, flush=True)
        return 0
    print("\n" + state.result()["summary"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
