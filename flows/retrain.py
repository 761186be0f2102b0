"""Prefect flow `retrain`: the pipeline's stages in order through DVC, under one MLflow parent run.

    python -m flows.retrain [--stage NAME ...] [--force]

Each stage runs as `dvc repro --single-item <stage>`, so the DVC cache and dvc.lock stay the single
truth and unchanged stages are skipped. Transient failures (a held DVC lock, a dropped connection)
are retried. Every section of params.yaml is validated before anything runs. Prefect is ephemeral
unless PREFECT_API_URL is set; MLflow is the project's sqlite file unless MLFLOW_TRACKING_URI is set.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, runtime, task  # noqa: E402
from prefect.states import Failed, State  # noqa: E402

from bayling import summary as run_summary  # noqa: E402
from bayling.errors import PipelineError  # noqa: E402
from bayling.params import load_all  # noqa: E402

ROOT = Path(os.environ.get("BAYLING_ROOT", ".")).resolve()
STAGES = ["base_model", "fetch", "synthesize", "tokenize", "train", "evaluate", "register"]
TRANSIENT_MARKERS = ("Unable to acquire lock", "is locked", "Connection reset", "Connection refused", "timed out")
TAIL_LINES = 30
PROGRESS_BAR = re.compile(r"\d+%\|")
# DVC's git hints are meant for someone at a shell, not for an orchestrated run.
DVC_HINTS = ("To track the changes with git", "To enable auto staging", "dvc config core.autostage", "git add ", "Use `dvc push`")


def _is_transient(message: str | None) -> bool:
    return any(marker in (message or "") for marker in TRANSIENT_MARKERS)


def _retry_transient(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    return _is_transient(state.message)


def stage_env() -> dict[str, str]:
    """The environment DVC runs stage commands in: this interpreter's bin first, so `python` is ours."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["BAYLING_ROOT"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"  # stage logs reach the flow's log as they happen
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    return env


@task(retries=2, retry_delay_seconds=[5, 20], retry_condition_fn=_retry_transient, task_run_name="dvc-repro-{stage}")
def repro_stage(stage: str, force: bool = False) -> dict | State:
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line and not PROGRESS_BAR.search(line) and not line.lstrip().startswith(DVC_HINTS):
            output.append(line)
            logger.info(line)
    returncode = proc.wait()
    if returncode != 0:
        # A failed state with the stage's own last lines, not a traceback of this wrapper.
        return Failed(message=f"stage '{stage}' failed (exit {returncode}):\n" + "\n".join(output[-TAIL_LINES:]))
    skipped = any("didn't change, skipping" in line for line in output)
    return {"stage": stage, "ran": not skipped, "seconds": round(time.perf_counter() - started, 2)}


@flow(name="retrain")
def retrain(stages: list[str] | None = None, force: bool = False) -> dict | State:
    """Run the pipeline stages through DVC under one MLflow parent run and print a summary."""
    import mlflow

    from bayling.lineage import git_state
    from bayling.tracking import clear_parent_run, configure, tracking_uri, write_parent_run

    started = time.perf_counter()
    try:
        params = load_all(ROOT / "params.yaml")
        wanted = check_stages(stages)
    except PipelineError as exc:
        return Failed(message=str(exc))
    experiment_id = configure(ROOT, params["tracking"].experiment)
    client = mlflow.MlflowClient()
    git = git_state(ROOT)
    parent = client.create_run(
        experiment_id,
        run_name="retrain",
        tags={
            "pipeline.flow": "retrain",
            "prefect.flow_run_id": str(runtime.flow_run.id or "none"),
            "git_commit": git["commit"],
            "git_dirty": str(git["dirty"]).lower(),
        },
    )
    write_parent_run(ROOT, parent.info.run_id)
    results: list[dict] = []
    failure: str | None = None
    try:
        for stage in wanted:
            state = repro_stage(stage, force, return_state=True)
            if state.is_failed():
                failure = state.message
                break
            results.append(state.result())
    finally:
        clear_parent_run(ROOT)
        client.set_terminated(parent.info.run_id, "FAILED" if failure else "FINISHED")
    if failure:
        return Failed(message=failure)
    collected = run_summary.collect(ROOT)
    evaluation = collected.get("eval") or {}
    for key, value in evaluation.items():
        if ".avg." in key and isinstance(value, (int, float)):
            client.log_metric(parent.info.run_id, key, value)
    text = run_summary.render(collected, results, tracking_uri(ROOT), time.perf_counter() - started)
    get_run_logger().info("run summary\n%s", text)
    return {"parent_run_id": parent.info.run_id, "stages": results, "summary": text, **collected}


def check_stages(stages: list[str] | None) -> list[str]:
    wanted = stages or STAGES
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise PipelineError(f"unknown stage(s) {unknown}; choose from {STAGES}")
    return wanted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", action="append", choices=STAGES, help="run only these stages (repeatable)")
    parser.add_argument("--force", action="store_true", help="re-run stages even when DVC says they are up to date")
    args = parser.parse_args(argv)
    try:
        load_all(ROOT / "params.yaml")  # refuse bad params before starting Prefect at all
        check_stages(args.stage)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = retrain(stages=args.stage, force=args.force, return_state=True)
    if state.is_failed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    print("\n" + state.result()["summary"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
