"""What the registry says a version was built from, and that record restored into a work tree.

A version carries its git commit and the md5 of every DVC out (tags `dvc.<path>.md5`), and its register
run holds the exact dvc.lock and params.yaml it was built from (artifacts under `lineage/`, written by
bayling/register/run.py). Restoring checks that the three agree before a rebuild trusts them.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayling.core.errors import PipelineError
from bayling.register.lineage_tags import LINEAGE_ARTIFACTS, REMOTE_TAG

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else f"models:/{self.name}@{self.alias}"


@dataclass(frozen=True)
class RecordedVersion:
    """What the registry says a version was built from."""

    name: str
    version: str
    commit: str
    dirty: bool
    outs: dict[str, str]  # DVC out path -> md5 at registration
    run_id: str  # the register run, which holds lineage/
    remote: str | None = None


def parse_model_uri(uri: str) -> ModelRef:
    match = MODEL_URI.match(uri.strip())
    if not match:
        raise PipelineError(f"not a registered model URI: {uri!r}; expected models:/NAME/VERSION or models:/NAME@ALIAS")
    return ModelRef(match["name"], match["version"], match["alias"])


def recorded_version(client: Any, ref: ModelRef) -> RecordedVersion:
    """Read a version's lineage tags; refuse one that lacks what rebuilding it needs."""
    from mlflow.exceptions import MlflowException

    try:
        version = (client.get_model_version(ref.name, ref.version) if ref.version
                   else client.get_model_version_by_alias(ref.name, ref.alias))
    except MlflowException as exc:
        raise PipelineError(f"{ref}: not found in the registry ({exc.message if hasattr(exc, 'message') else exc})") from None
    tags = version.tags or {}
    outs = {normal_path(key[len("dvc."):-len(".md5")]): value for key, value in tags.items()
            if key.startswith("dvc.") and key.endswith(".md5")}
    commit = tags.get("git_commit", "unknown")
    if commit == "unknown" or not outs:
        raise PipelineError(f"{ref} (version {version.version}) has no git commit or DVC out hashes recorded: it was not "
                            "registered by this pipeline's register stage")
    return RecordedVersion(ref.name, str(version.version), commit, tags.get("git_dirty") == "true", outs,
                           tags.get("register_run_id") or version.run_id, tags.get(REMOTE_TAG))


def lock_outs(lock: dict[str, Any]) -> dict[str, str]:
    """Each out's md5 by its normal path: DVC writes a path as params.yaml spells it (`./models/base/`)."""
    return {normal_path(out["path"]): out["md5"] for stage in (lock.get("stages") or {}).values()
            for out in stage.get("outs") or [] if "md5" in out}


def check_lock_matches(recorded: RecordedVersion, lock: dict[str, Any]) -> None:
    """The logged dvc.lock must be the one the tags were taken from."""
    logged = lock_outs(lock)
    mismatched = sorted(p for p, md5 in recorded.outs.items() if logged.get(p) != md5)
    if mismatched:
        raise PipelineError(f"the dvc.lock logged with version {recorded.version} does not match its dvc.*.md5 tags for "
                            f"{', '.join(mismatched)}: the record was altered after registration")


MISSING = object()


LOGGING_STAGE = "register"  # logs dvc.lock and params.yaml while it runs; never re-run by a rebuild


def check_params_match(lock: dict[str, Any], params: dict[str, Any], logged_by: str = LOGGING_STAGE) -> None:
    """The logged params.yaml must hold every value the logged dvc.lock says its stages read: otherwise the
    rebuild would run settings (a teacher endpoint, a key's variable) that the version was never built with.
    Only the lock's outs are tagged on the version, so this is what vouches for the logged params.

    The stage that logged the lock (`logged_by`) is left out: it logs dvc.lock while it runs, and DVC writes that
    stage's own entry only after it has finished, so the logged entry is the previous run's (after a run that changed
    only register.gate, it holds the old gate). A rebuild never re-runs that stage, so its params cannot change what
    is rebuilt."""
    def lookup(key: str) -> Any:
        node: Any = params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return MISSING
            node = node[part]
        return node

    altered = sorted({f"{name}: {key}" for name, stage in (lock.get("stages") or {}).items() if name != logged_by
                      for file, values in (stage.get("params") or {}).items() if Path(file).name == "params.yaml"
                      for key, value in (values or {}).items() if lookup(key) != value})
    if altered:
        shown = ", ".join(altered[:8]) + (f" and {len(altered) - 8} more" if len(altered) > 8 else "")
        raise PipelineError(f"the params.yaml logged with the version does not hold the values its dvc.lock records for "
                            f"{shown}: the record was altered after registration, or the version was registered while those stages were "
                           "out of date with params.yaml; either way a rebuild would not run what the version was built with")


def normal_path(path: str) -> str:
    """An out path as dvc.yaml, dvc.lock and the tags may each spell it."""
    return Path(path).as_posix().removeprefix("./").rstrip("/")



def restore_lineage(client: Any, recorded: RecordedVersion, workdir: Path) -> list[str]:
    """Put the dvc.lock and params.yaml logged with the version into the work tree; returns notes for the report."""
    notes: list[str] = []
    downloaded = workdir / ".cache" / "lineage"
    downloaded.mkdir(parents=True, exist_ok=True)
    try:
        client.download_artifacts(recorded.run_id, LINEAGE_ARTIFACTS, str(downloaded))
    except Exception as exc:  # a version registered before lineage was logged, or an unreachable artifact store
        raise PipelineError(f"version {recorded.version}'s register run {recorded.run_id} has no {LINEAGE_ARTIFACTS}/ "
                            f"artifacts (dvc.lock, params.yaml) to rebuild from: {type(exc).__name__}: {str(exc)[:300]}") from None
    logged = downloaded / LINEAGE_ARTIFACTS
    if not (logged / "dvc.lock").exists():
        raise PipelineError(f"version {recorded.version}'s register run {recorded.run_id} logged no dvc.lock")
    lock = logged_mapping(logged / "dvc.lock", recorded)
    check_lock_shape(lock, recorded)
    check_lock_matches(recorded, lock)
    shutil.copy2(logged / "dvc.lock", workdir / "dvc.lock")
    if (logged / "params.yaml").exists():
        check_params_match(lock, logged_mapping(logged / "params.yaml", recorded))
        committed = workdir / "params.yaml"
        if not committed.exists() or committed.read_bytes() != (logged / "params.yaml").read_bytes():
            notes.append("params.yaml differs from the commit's (a run with -S overrides): using the one logged with the version")
        shutil.copy2(logged / "params.yaml", committed)
    if recorded.dirty:
        notes.append("the version was built from a work tree with uncommitted changes; only params.yaml is restored, "
                     "other uncommitted edits cannot be")
    return notes


YAML_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}


def _damaged(recorded: RecordedVersion, name: str, problem: str) -> PipelineError:
    return PipelineError(f"the {name} logged with version {recorded.version} {problem}: the version's record is damaged and it "
                         f"cannot be rebuilt from it (the file is {LINEAGE_ARTIFACTS}/{name} among register run "
                         f"{recorded.run_id}'s artifacts)")


def logged_mapping(path: Path, recorded: RecordedVersion) -> dict[str, Any]:
    """A file of the version's logged lineage (dvc.lock, params.yaml) as the YAML mapping it must be."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except UnicodeDecodeError:
        raise _damaged(recorded, path.name, "is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise _damaged(recorded, path.name, f"is not valid YAML ({problem}{where})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _damaged(recorded, path.name, f"is a YAML {YAML_TYPES.get(type(data), type(data).__name__)}, not a mapping")
    return data


def check_lock_shape(lock: dict[str, Any], recorded: RecordedVersion) -> None:
    """The parts of a dvc.lock this module reads, in the shapes DVC writes them: a record that parses but holds
    something else is as damaged as one that does not parse."""
    stages = lock.get("stages") or {}
    if not isinstance(stages, dict):
        raise _damaged(recorded, "dvc.lock", "has `stages` that is not a mapping of stage names")
    for name, stage in stages.items():
        if not isinstance(stage, dict):
            raise _damaged(recorded, "dvc.lock", f"has stage `{name}` that is not a mapping")
        outs = stage.get("outs") or []
        if not isinstance(outs, list) or not all(isinstance(o, dict) and isinstance(o.get("path"), str) for o in outs):
            raise _damaged(recorded, "dvc.lock", f"has `stages.{name}.outs` that is not a list of entries with a path")
        params = stage.get("params") or {}
        if not isinstance(params, dict) or not all(v is None or isinstance(v, dict) for v in params.values()):
            raise _damaged(recorded, "dvc.lock", f"has `stages.{name}.params` that is not a mapping of files to values")
