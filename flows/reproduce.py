"""Prefect flow `reproduce`: rebuild a registered model version from its record and compare, stage by stage.

    python -m flows.reproduce models:/NAME/VERSION | models:/NAME@ALIAS [--from STAGE] [-S key=value ...]
                              [--remote NAME] [--workdir DIR] [--keep]

1. Reads the version's lineage from MLflow: the git commit and every DVC out's md5 (tags), and the
   dvc.lock and params.yaml its register run logged under `lineage/`.
2. Clones this repository into a fresh work tree (`.cache/reproduce/...` unless --workdir) at that commit,
   puts the logged dvc.lock and params.yaml in it, then applies any -S overrides (a planted change; values
   read as YAML 1.2, refused before anything is written unless every section with them merged in is valid).
3. `dvc pull` from the commit's default DVC remote (or --remote; .dvc/config.local is carried over for
   credentials and endpoints), or, with no remote, from this checkout's own DVC cache. That brings back
   every recorded output. The credentials are then taken out of the work tree's config.local.
4. Clears the re-run stages' persistent outs (train's checkpoints: a pulled one would let train resume),
   then re-runs the stages with `dvc repro --single-item --force`, from the first stage or from --from
   STAGE (the stages before it keep their pulled outputs). Register is never re-run: it would write to
   the registry. The runs hang under an MLflow parent run named `reproduce`, which gets the report.
5. Compares each re-run stage's cached outputs (data, weights, predictions) with the recorded md5s in
   pipeline order. Prints "reproduced bit for bit", or names the first stage whose output differs and
   which files: rows for data, per-tensor norm changes for weights. Exit code 0 (bit for bit), 1 (differs, or a
   stage failed), 2 (refused) or 130 (Ctrl-C), as flows/runtime/exits.py defines them.
   A bit-for-bit rebuild deletes the work tree unless --keep or --workdir; a different one keeps it.
   Nothing compared (no recorded cached output among the re-run stages) is not a pass.

What is bit-exact, and what is not, is in the README ("Reproducing a registered model").
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.states import Failed, State

from bayling.core.errors import PipelineError
from bayling.core.paths import project_root
from flows.runtime.dvc_runner import TAIL_LINES, dvc, stage_env, task_result
from flows.runtime.exits import DONE, FAILED, exit_code, refused
from flows.runtime.interruption import INTERRUPTION
from flows.runtime.prefect_server import flow_session

ROOT = project_root()


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C that stopped the flow at once, carrying what became of the work tree for main() to say."""


@task(task_run_name="work-tree")
def prepare_work_tree(recorded: Any, client: Any, workdir: Path, overrides: dict[str, Any]) -> list[str] | State:
    """Clone at the recorded commit, restore the logged dvc.lock and params.yaml, apply overrides. Returns notes."""
    from bayling.config.overrides import apply_overrides
    from bayling.reproduce.record import restore_lineage
    from bayling.reproduce.work_tree import clone_at

    try:
        clone_at(ROOT, recorded.commit, workdir)
        notes = restore_lineage(client, recorded, workdir)
        if overrides:
            apply_overrides(workdir / "params.yaml", overrides)
            notes.append("planted overrides: " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    except PipelineError as exc:
        return Failed(message=str(exc))
    return notes


@task(task_run_name="dvc-pull")
def pull(workdir: Path, env: dict[str, str], remote: str | None) -> str | State:
    """Pull the recorded outputs: from --remote, the commit's default remote, or else this checkout's own DVC
    cache (laid out as a DVC 3 local remote is), which holds what was built here."""
    try:
        return _pull(workdir, env, remote)
    except PipelineError as exc:
        return Failed(message=str(exc))


def _pull(workdir: Path, env: dict[str, str], remote: str | None) -> str:
    from bayling.reproduce.work_tree import PROJECT_CACHE_REMOTE, dvc_cache_dir

    code, lines = dvc("remote", "default", cwd=workdir, env=env, log_lines=False)
    name = remote or (lines[-1].strip() if code == 0 and lines else None)
    if not name:
        name = PROJECT_CACHE_REMOTE
        code, lines = dvc("remote", "add", "--local", "--force", name, str(dvc_cache_dir(ROOT)), cwd=workdir, env=env,
                          log_lines=False)
        if code != 0:
            raise PipelineError("could not use this checkout's DVC cache as a remote:\n" + "\n".join(lines[-TAIL_LINES:]))
    code, output = dvc("pull", "--allow-missing", "-r", name, cwd=workdir, env=env)
    if code != 0 or any(line.startswith("ERROR:") for line in output):
        raise PipelineError(f"dvc pull from remote '{name}' failed (exit {code}):\n" + "\n".join(output[-TAIL_LINES:]))
    return name


@task(task_run_name="rerun-{stage}")
def rerun(workdir: Path, stage: str, env: dict[str, str]) -> dict | State:
    started = time.perf_counter()
    code, output = dvc("repro", "--single-item", stage, "--force", cwd=workdir, env=env)
    if INTERRUPTION.requested:
        return Failed(message=f"interrupted during stage '{stage}'")
    if code != 0:
        return Failed(message=f"stage '{stage}' failed in {workdir} (exit {code}):\n" + "\n".join(output[-TAIL_LINES:]))
    return {"stage": stage, "seconds": round(time.perf_counter() - started, 2)}


@flow(name="reproduce")
def reproduce(model_uri: str, start: str | None = None, overrides: dict[str, Any] | None = None, workdir: str | None = None,
              remote: str | None = None, keep: bool = False) -> dict | State:
    """Rebuild a registered version in a fresh work tree and compare every re-run stage's outputs with its record."""
    from mlflow.exceptions import MlflowException

    try:
        return _reproduce(model_uri, start, overrides or {}, workdir, remote, keep)
    except PipelineError as exc:
        return refused(exc)
    except MlflowException as exc:  # the registry unreachable, or a value it refuses
        return refused(f"MLflow: {exc.message}")


def _reproduce(model_uri: str, start: str | None, overrides: dict[str, Any], workdir_arg: str | None, remote: str | None,
               keep: bool) -> dict | State:
    import mlflow

    from bayling.config.loader import load_all
    from bayling.core.tracking import PARENT_RUN_ENV, configure, tracking_uri
    from bayling.reproduce.comparison import Verdict, dvc_stage_outs, pipeline_order, render, stage_results
    from bayling.reproduce.record import parse_model_uri, recorded_version
    from bayling.reproduce.work_tree import (
        COPIED_CREDENTIALS,
        PROJECT_CACHE_REMOTE,
        check_overrides_rerun,
        check_workdir,
        clear_persistent_outs,
        dvc_cache_dir,
        new_work_tree,
        remove_credentials,
        stages_from,
    )

    logger = get_run_logger()
    ref = parse_model_uri(model_uri)
    uri = tracking_uri(ROOT)
    client = mlflow.MlflowClient(uri)
    recorded = recorded_version(client, ref)
    if workdir_arg:
        workdir = Path(workdir_arg).resolve()
        check_workdir(workdir)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PipelineError(f"--workdir {workdir}: cannot create it ({exc.strerror or exc})") from None
    else:
        workdir = new_work_tree(ROOT / ".cache" / "reproduce", recorded)
    ours = not any(workdir.iterdir())  # a folder that already held files is refused by the clone, and left alone
    logger.info("rebuilding %s (version %s, commit %s) in %s", ref, recorded.version, recorded.commit[:12], workdir)
    # until the stages run, a failure (a bad --from or -S, a failed pull, Ctrl-C, the registry gone) leaves nothing
    # worth keeping, only a clone holding the copied DVC credentials; the message says what became of it
    try:
        notes = task_result(prepare_work_tree(recorded, client, workdir, overrides, return_state=True))
        for note in notes:
            logger.info(note)
        dvc_yaml = yaml.safe_load((workdir / "dvc.yaml").read_text("utf-8")) or {}
        order = pipeline_order(dvc_yaml)
        wanted = stages_from(order, start)
        check_overrides_rerun(dvc_yaml, wanted, overrides)
        params = load_all(workdir / "params.yaml")
        env = stage_env()
        env.update(BAYLING_ROOT=str(workdir), MLFLOW_TRACKING_URI=uri)
        pulled = task_result(pull(workdir, env, remote, return_state=True))
        remove_credentials(workdir)  # nothing after the pull logs in to the remote, and the work tree may be kept
        if INTERRUPTION.requested:
            raise PipelineError("interrupted during dvc pull")
        if recorded.remote and pulled != PROJECT_CACHE_REMOTE and remote is None:
            notes.append(f"pulled from the commit's default remote '{pulled}'; the version recorded {recorded.remote}")
        clear_persistent_outs(workdir, wanted)  # a pulled checkpoint must not let train resume instead of training
        # the experiment as the project's own tracking store knows it, not the work tree's
        experiment_id = configure(ROOT, params["tracking"].experiment)
        parent = client.create_run(experiment_id, run_name="reproduce", tags={
            "pipeline.flow": "reproduce", "reproduces": str(ref), "reproduces.version": recorded.version,
            "git_commit": recorded.commit, **{f"override.{k}"[:250]: str(v)[:5000] for k, v in overrides.items()},
        })
    except BaseException as exc:
        if not ours:
            raise
        if workdir_arg:
            remove_credentials(workdir)
            fate = f"the work tree {workdir} is kept (--workdir), without {COPIED_CREDENTIALS}"
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            fate = f"the work tree {workdir} was removed"
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"interrupted before the stages ran; {fate}") from None
        if INTERRUPTION.requested:  # the first Ctrl-C, which let the running DVC command stop by itself
            raise PipelineError(f"interrupted before the stages ran; {fate}") from None
        if isinstance(exc, PipelineError):
            raise PipelineError(f"{exc}\n{fate}") from None
        raise
    kept = f"the work tree is kept at {workdir}; {COPIED_CREDENTIALS} were removed after the pull"
    env[PARENT_RUN_ENV] = parent.info.run_id
    ran: list[dict] = []
    status = "KILLED"  # unless the loop ends by itself: Ctrl-C or a crash of this process
    try:
        for stage in wanted:
            state = rerun(workdir, stage, env, return_state=True)
            if state.is_failed():
                status = "KILLED" if INTERRUPTION.requested else "FAILED"
                return Failed(message=f"{state.message}\n{kept}")
            ran.append(state.result())
        stage_outs, rebuilt = dvc_stage_outs(workdir)
        verdict = Verdict(stage_results(order, stage_outs, recorded.outs, rebuilt), wanted)
        remove = verdict.reproduced and not keep and not workdir_arg
        text = render(ref, recorded, verdict, dvc_cache_dir(workdir), None if remove else workdir)
        if notes:
            text += "\nnotes:\n" + "\n".join(f"- {n}" for n in notes)
        first = verdict.first_difference
        client.set_tag(parent.info.run_id, "reproduced", str(verdict.reproduced).lower())
        client.set_tag(parent.info.run_id, "first_differing_stage", first.stage if first else "none")
        client.log_text(parent.info.run_id, text, "reproduce.txt")
        result = {
            "model_uri": str(ref), "version": recorded.version, "commit": recorded.commit, "reproduced": verdict.reproduced,
            "first_differing_stage": first.stage if first else None, "reran": wanted, "stages": ran,
            "workdir": None if remove else str(workdir), "run_id": parent.info.run_id, "report": text,
            "outs": [{"stage": s.stage, "path": o.path, "recorded": o.recorded, "rebuilt": o.reproduced, "cached": o.cached}
                     for s in verdict.stages for o in s.outs],
        }
        client.log_dict(parent.info.run_id, result, "reproduce.json")
        status = "FINISHED"
    except KeyboardInterrupt:  # a second Ctrl-C, or one between two stages
        raise Interrupted(f"interrupted during the stages; {kept}") from None
    finally:
        client.set_terminated(parent.info.run_id, status)
    if remove:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_uri", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    parser.add_argument("--from", dest="start", metavar="STAGE", help="re-run from this stage, on the pulled outputs before it")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="change params.yaml in the work tree before re-running (a planted change)")
    parser.add_argument("--remote", help="the DVC remote to pull from (default: the commit's default remote)")
    parser.add_argument("--workdir", help="rebuild here (kept) instead of a new folder under .cache/reproduce")
    parser.add_argument("--keep", action="store_true", help="keep the work tree even when it reproduces bit for bit")
    args = parser.parse_args(argv)
    return exit_code(lambda: _run(args), _report)


def _run(args: argparse.Namespace) -> State:
    from bayling.config.overrides import check_overrides, parse_override
    from bayling.reproduce.record import parse_model_uri
    from bayling.reproduce.work_tree import check_workdir

    parse_model_uri(args.model_uri)
    if args.workdir:
        check_workdir(Path(args.workdir).resolve())  # before the registry and a Prefect server are asked anything
    overrides = {".".join(path): value for path, value in map(parse_override, args.set_param)}
    # what the schemas alone refuse, before cloning; the whole of the version's params is checked in the work tree
    check_overrides(overrides)
    with flow_session(ROOT):  # the first Ctrl-C lets the running stage stop by itself
        return reproduce(args.model_uri, args.start, overrides, args.workdir, args.remote, args.keep, return_state=True)


def _report(state: State) -> int:
    result = state.result()
    print("\n" + result["report"], flush=True)
    return DONE if result["reproduced"] else FAILED


if __name__ == "__main__":
    sys.exit(main())
