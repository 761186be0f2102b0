"""What a registered version's register runs vouch for: its gate verdict and who registered it.

Both are read from records no EDIT holder can change: the `gate_passed` params of every register run of the
version's files, and its register run's `registered_by` param (a version's tags can be rewritten by anyone
with EDIT on the model, params never). Register sets the candidate alias by the verdict; approvals
(bayling/approvals) check it again before an approval moves the champion.
"""

from __future__ import annotations

from typing import Any

from bayling.core.errors import PipelineError


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
