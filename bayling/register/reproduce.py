"""Rebuilding a registered model version from its record, and saying whether it came out the same.

A version carries its git commit and the md5 of every DVC out (tags `dvc.<path>.md5`), and its register
run holds the exact dvc.lock and params.yaml it was built from (artifacts under `lineage/`). This module
reads that record, and after `flows.reproduce` has re-run the stages in a fresh work tree, compares each
stage's outputs with it in pipeline order and explains the first difference file by file: rows gained
and lost for data, the change in each weight tensor's norm for a model.

Hand-written because DVC compares a work tree only with its own dvc.lock (`dvc status`, `dvc diff`), not
with a record kept in a model registry, and reports a changed directory as a changed hash, not as rows
or weights.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bayling.core.errors import PipelineError

LINEAGE_ARTIFACTS = "lineage"  # folder of the register run holding dvc.lock and params.yaml
REMOTE_TAG = "dvc.remote"
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")
TOP_TENSORS = 5
MAX_FILES_SHOWN = 12


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


@dataclass(frozen=True)
class OutResult:
    path: str
    recorded: str | None
    reproduced: str | None
    cached: bool  # a cached DVC out (data, weights, predictions), not a report written in place or persistent state

    @property
    def same(self) -> bool:
        return self.recorded == self.reproduced


@dataclass
class StageResult:
    stage: str
    outs: list[OutResult] = field(default_factory=list)

    @property
    def differing(self) -> list[OutResult]:
        """Cached outs that differ, or that only one side has: the bit-for-bit contract. Reports written in
        place are not in it."""
        return [o for o in self.outs if o.cached and not o.same]


@dataclass
class Verdict:
    stages: list[StageResult]
    reran: list[str]

    @property
    def first_difference(self) -> StageResult | None:
        return next((s for s in self.stages if s.stage in self.reran and s.differing), None)

    @property
    def reproduced(self) -> bool:
        """Nothing differs, and something was compared: an empty comparison proves nothing."""
        return self.first_difference is None and bool(self.checked())

    def checked(self) -> list[OutResult]:
        return [o for s in self.stages if s.stage in self.reran for o in s.outs if o.cached and o.recorded is not None]


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


def pipeline_order(dvc_yaml: dict[str, Any]) -> list[str]:
    return list(dvc_yaml.get("stages") or {})


def stage_results(order: list[str], stage_outs: dict[str, list[tuple[str, bool]]], recorded: dict[str, str],
                  reproduced: dict[str, str]) -> list[StageResult]:
    """Recorded against reproduced md5s, stage by stage in pipeline order. `stage_outs` maps a stage to its
    (out path, cached) pairs as DVC resolved them in the work tree."""
    results = []
    for stage in order:
        outs = [OutResult(path, recorded.get(path), reproduced.get(path), cached) for path, cached in stage_outs.get(stage, [])]
        results.append(StageResult(stage, outs))
    return results


def dvc_stage_outs(workdir: Path) -> tuple[dict[str, list[tuple[str, bool]]], dict[str, str]]:
    """Each stage's outs in the work tree (path as in dvc.lock, compared bit for bit or not) and their md5 in its
    dvc.lock."""
    import yaml
    from dvc.repo import Repo

    outs: dict[str, list[tuple[str, bool]]] = {}
    with Repo(str(workdir)) as repo:
        for stage in repo.index.stages:
            name = getattr(stage, "name", None)
            if name:
                # a persistent out is resumable state (train's kept checkpoints log wall-clock throughput in
                # trainer_state.json): like a report written in place, it is counted, not held to bit equality
                outs[name] = [(normal_path(out.def_path), bool(out.use_cache) and not out.persist) for out in stage.outs]
    lock_path = workdir / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text("utf-8")) if lock_path.exists() else {}
    return outs, lock_outs(lock or {})


def normal_path(path: str) -> str:
    """An out path as dvc.yaml, dvc.lock and the tags may each spell it."""
    return Path(path).as_posix().removeprefix("./").rstrip("/")


# --- explaining a difference -------------------------------------------------------------------------------

def cache_file(cache: Path, md5: str) -> Path:
    """Where DVC 3 keeps an object: files/md5/<first two hex digits>/<the rest>."""
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def directory_listing(cache: Path, md5: str) -> dict[str, str] | None:
    path = cache_file(cache, md5)
    if not path.exists():
        return None
    return {entry["relpath"]: entry["md5"] for entry in json.loads(path.read_text("utf-8"))}


def jsonl_rows(path: Path) -> Counter[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return Counter(line.rstrip("\n") for line in handle if line.strip())


def arrow_rows(path: Path) -> int:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all().num_rows
        except pa.ArrowInvalid:
            return pa.ipc.open_file(source).read_all().num_rows


def weight_deltas(old: Path, new: Path, top: int = TOP_TENSORS) -> list[str]:
    """Per-tensor change ||new - old|| / ||old||, largest first, and the change over all tensors."""
    import torch
    from safetensors import safe_open

    lines: list[str] = []
    changes: list[tuple[float, str, float]] = []
    total_delta = total_norm = 0.0
    with safe_open(str(old), "pt") as before, safe_open(str(new), "pt") as after:
        old_names, new_names = set(before.keys()), set(after.keys())
        if old_names != new_names:
            lines.append(f"tensors only in the recorded file: {sorted(old_names - new_names)[:5]}; "
                         f"only in the new one: {sorted(new_names - old_names)[:5]}")
        for name in sorted(old_names & new_names):
            a, b = before.get_tensor(name).double(), after.get_tensor(name).double()
            if a.shape != b.shape:
                lines.append(f"{name}: shape {tuple(a.shape)} -> {tuple(b.shape)}")
                continue
            delta, norm = torch.linalg.vector_norm(b - a).item(), torch.linalg.vector_norm(a).item()
            total_delta += delta**2
            total_norm += norm**2
            if delta:
                changes.append((delta / norm if norm else float("inf"), name, delta))
    changes.sort(reverse=True)
    lines.insert(0, f"{len(changes)} of {len(old_names & new_names)} tensors changed; "
                    f"||Δ|| / ||W|| over all weights = {(total_delta ** 0.5) / (total_norm ** 0.5 or 1):.3e}")
    lines += [f"  {name}: ||Δ|| = {delta:.4e} ({relative:.3e} of its norm)" for relative, name, delta in changes[:top]]
    return lines


def json_changes(old: Path, new: Path, limit: int = 8) -> list[str]:
    from bayling.config.loader import flatten

    a, b = json.loads(old.read_text("utf-8")), json.loads(new.read_text("utf-8"))
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return ["content differs"]
    fa, fb = flatten(a), flatten(b)
    keys = sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
    shown = [f"  {k}: {fa.get(k, '(absent)')!s:.60} -> {fb.get(k, '(absent)')!s:.60}" for k in keys[:limit]]
    return [f"{len(keys)} field(s) differ", *shown]


def describe_file(relpath: str, old: Path | None, new: Path | None) -> list[str]:
    """What changed in one file, in the terms its kind is read in."""
    if old is None or not old.exists():
        return [f"{relpath}: new file" if old is None else f"{relpath}: the recorded copy is not in the cache (not pushed?)"]
    if new is None or not new.exists():
        return [f"{relpath}: no longer produced"]
    suffix = Path(relpath).suffix
    try:
        if suffix == ".jsonl":
            before, after = jsonl_rows(old), jsonl_rows(new)
            gone, added = before - after, after - before
            return [f"{relpath}: rows {sum(before.values())} -> {sum(after.values())} "
                    f"({sum(gone.values())} recorded rows gone, {sum(added.values())} new)"]
        if suffix == ".arrow":
            return [f"{relpath}: rows {arrow_rows(old)} -> {arrow_rows(new)}"]
        if suffix == ".safetensors":
            return [f"{relpath}:", *("  " + line for line in weight_deltas(old, new))]
        if suffix == ".json":
            return [f"{relpath}: " + (lines := json_changes(old, new))[0], *lines[1:]]
    except Exception as exc:  # an unreadable file still gets a line
        return [f"{relpath}: differs ({type(exc).__name__} reading it: {exc})"]
    return [f"{relpath}: {old.stat().st_size} -> {new.stat().st_size} bytes"]


def explain(out: OutResult, cache: Path) -> list[str]:
    """The files of `out` that differ between the record and the rebuild, each described."""
    if out.recorded is None:
        return [f"{out.path}: not in the version's record (the version's dvc.*.md5 tags have no such out)"]
    if out.reproduced is None:
        return [f"{out.path}: the rebuild's dvc.lock has no md5 for it"]
    if not out.recorded.endswith(".dir"):
        return describe_file(out.path, cache_file(cache, out.recorded), cache_file(cache, out.reproduced))
    before, after = directory_listing(cache, out.recorded), directory_listing(cache, out.reproduced)
    if before is None or after is None:
        return [f"{out.path}: the {'recorded' if before is None else 'new'} file list is not in the cache, so the files "
                "cannot be compared one by one (was the recorded version pushed to the DVC remote?)"]
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    lines = [f"{out.path}: {len(changed)} of {len(set(before) | set(after))} files differ"]
    for relpath in changed[:MAX_FILES_SHOWN]:
        old = cache_file(cache, before[relpath]) if relpath in before else None
        new = cache_file(cache, after[relpath]) if relpath in after else None
        lines += ["  " + line for line in describe_file(relpath, old, new)]
    if len(changed) > MAX_FILES_SHOWN:
        lines.append(f"  ... and {len(changed) - MAX_FILES_SHOWN} more")
    return lines


def render(ref: ModelRef, recorded: RecordedVersion, verdict: Verdict, cache: Path, workdir: Path | None) -> str:
    """The report; `workdir` is None when the work tree was removed after a bit-for-bit rebuild."""
    where = f"rebuilt in {workdir}" if workdir else "rebuilt in a work tree since removed"
    head = f"{ref} = {recorded.name} version {recorded.version}, commit {recorded.commit[:12]}, {where}"
    checked = verdict.checked()
    if not checked and verdict.first_difference is None:
        return "\n".join([head, "NOT reproduced: no cached output of the re-run stages is in the version's record, so "
                                "nothing was compared"])
    reports = [o for s in verdict.stages if s.stage in verdict.reran for o in s.outs if not o.cached and o.recorded is not None]
    report_line = ("reports written in place and kept checkpoints (not compared bit for bit: they hold run ids and "
                   f"timings): {sum(o.same for o in reports)} of {len(reports)} identical") if reports else ""
    first = verdict.first_difference
    if first is None:
        lines = [head, f"reproduced bit for bit: {len(checked)} cached outputs of {', '.join(verdict.reran)} match the record"]
        return "\n".join([*lines, report_line] if report_line else lines)
    lines = [head, f"NOT reproduced: the first stage whose output differs is '{first.stage}'"]
    for out in first.differing:
        try:
            described = explain(out, cache)
        # the verdict stands whatever the cache holds: a damaged or foreign object only loses the description
        except (OSError, ValueError, KeyError, TypeError) as exc:
            described = [f"{out.path}: its cached objects could not be read ({type(exc).__name__}: {exc})"]
        lines += [f"  {out.path}: recorded {out.recorded}, rebuilt {out.reproduced}", *("    " + line for line in described)]
    later = [s.stage for s in verdict.stages if s.stage in verdict.reran and s.differing and s is not first]
    if later:
        lines.append(f"later stages also differ: {', '.join(later)}")
    same_before = [s.stage for s in verdict.stages[: verdict.stages.index(first)] if s.stage in verdict.reran]
    if same_before:
        lines.append(f"identical before it: {', '.join(same_before)}")
    return "\n".join([*lines, report_line] if report_line else lines)


def stages_from(order: Iterable[str], start: str | None, skip: Iterable[str] = ("register",)) -> list[str]:
    """The stages to re-run: from `start` (or the first) to the end, without register, which would touch the registry."""
    order = [s for s in order if s not in set(skip)]
    if start is None:
        return order
    if start not in order:
        raise PipelineError(f"--from {start!r}: not a stage that can be re-run; choose from {order}")
    return order[order.index(start):]


def stage_params(dvc_yaml: dict[str, Any]) -> dict[str, list[str]]:
    """The params.yaml keys each stage declares, as dvc.yaml lists them (plain keys, or {params.yaml: [keys]})."""
    declared: dict[str, list[str]] = {}
    for name, stage in (dvc_yaml.get("stages") or {}).items():
        keys = declared.setdefault(name, [])
        for entry in stage.get("params") or []:
            if isinstance(entry, str):
                keys.append(entry)
            elif isinstance(entry, dict):
                keys.extend(k for file, listed in entry.items() if Path(file).name == "params.yaml" for k in listed or [])
    return declared


def check_overrides_rerun(dvc_yaml: dict[str, Any], rerun: list[str], overrides: Iterable[str]) -> None:
    """Refuse a planted change that none of the re-run stages reads: it would never run, and the rebuild
    would be reported as reproduced bit for bit although the change was never tried."""
    declared = stage_params(dvc_yaml)

    def readers(key: str) -> list[str]:
        return [stage for stage, keys in declared.items()
                if any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in keys)]

    for key in overrides:
        found = readers(key)
        if not set(found) & set(rerun):
            where = f"read only by {', '.join(found)}" if found else "read by no stage in dvc.yaml"
            earliest = next((s for s in found if s != "register"), None)  # register never re-runs
            hint = f"; re-run from '{earliest}' (--from {earliest}) to try it" if earliest else ""
            raise PipelineError(f"-S {key}: {where}, which this rebuild does not re-run ({', '.join(rerun) or 'nothing'}){hint}")


# --- the work tree ------------------------------------------------------------------------------------------

COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
PROJECT_CACHE_REMOTE = "project-cache"


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def new_work_tree(parent: Path, recorded: RecordedVersion) -> Path:
    """A fresh, uniquely named folder: two rebuilds of one version started in the same second get their own."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{recorded.name}-v{recorded.version}-{stamp}-", dir=parent))


def clone_at(root: Path, commit: str, workdir: Path) -> None:
    """Clone `root` into the empty folder `workdir` at `commit`, with root's local DVC settings (remote credentials,
    endpoints). The commit comes from a registry tag, so it must look like one before it reaches git."""
    if not COMMIT.match(commit):
        raise PipelineError(f"the version's git_commit tag {commit[:60]!r} is not a commit id")
    if workdir.exists() and any(workdir.iterdir()):
        raise PipelineError(f"work tree {workdir} exists and is not empty: choose another --workdir")
    # --shared borrows root's objects, so a commit on no branch (a run from a detached checkout) is there too
    cloned = _git(root, "clone", "--quiet", "--shared", "--no-checkout", str(root), str(workdir))
    if cloned.returncode != 0:
        raise PipelineError(f"git clone of {root} failed: {cloned.stderr.strip()}")
    checkout = _git(workdir, "checkout", "--quiet", "--detach", commit)
    if checkout.returncode != 0:
        raise PipelineError(f"commit {commit} is not in {root}'s git history ({checkout.stderr.strip()}); fetch it first")
    copy_local_config(root / ".dvc", workdir / ".dvc")


def _is_local_path(value: str) -> bool:
    return "://" not in value and not value.startswith(("~", "/"))


def copy_local_config(source: Path, dest: Path) -> None:
    """Carry `.dvc/config.local` (credentials, endpoints, a shared cache) into the clone. DVC reads a relative
    path there against the file's own folder, which in the clone is another place: such paths (a local
    remote's url, cache.dir, key and credential files) become absolute first."""
    from configobj import ConfigObj

    if not (source / "config.local").exists():
        return
    config = ConfigObj(str(source / "config.local"), encoding="utf-8", interpolation=False, write_empty_values=True)
    for name, section in config.items():
        if not hasattr(section, "items"):
            continue
        for key, value in section.items():
            path_like = ((name.startswith("remote ") and key == "url") or (name == "cache" and key == "dir")
                         or key.endswith(("path", "file")))
            if path_like and isinstance(value, str) and value and _is_local_path(value):
                section[key] = str((source / value).resolve())
    config.filename = str(dest / "config.local")
    config.write()


# The settings of a remote that a kept work tree's .dvc/config.local may still hold: where the remote is, never
# how to log in to it. An allowlist, so that a credential option this list does not know is removed too.
KEPT_REMOTE_SETTINGS = frozenset({"url", "endpointurl", "region", "profile", "ssl_verify", "version_aware"})
KEPT_SECTIONS = frozenset({"core", "cache"})  # the default remote's name, a shared cache folder
COPIED_CREDENTIALS = "the DVC credentials copied into its .dvc/config.local"  # "its": the work tree's, in messages


def remove_credentials(workdir: Path) -> None:
    """Take out of the work tree's .dvc/config.local what copy_local_config carried in to log in to a remote (keys,
    tokens, passwords, credential files, a user and token inside a URL), once the pull no longer needs them: a work
    tree kept for inspection must not be a second copy of the project's credentials."""
    from configobj import ConfigObj, ConfigObjError

    path = workdir / ".dvc" / "config.local"
    if not path.exists():
        return
    try:
        config = ConfigObj(str(path), encoding="utf-8", interpolation=False, write_empty_values=True)
    except (ConfigObjError, UnicodeDecodeError):  # what cannot be read cannot be sorted into secret and not
        path.unlink()
        return
    for name in list(config):
        section = config[name]
        if name in KEPT_SECTIONS:
            continue
        if not (name.startswith("remote ") and hasattr(section, "items")):
            del config[name]
            continue
        for key in list(section):
            if key not in KEPT_REMOTE_SETTINGS:
                del section[key]
            elif key == "url" and isinstance(section[key], str) and "://" in section[key]:
                public = public_url(section[key])
                if public is None:
                    del section[key]
                else:
                    section[key] = public
    config.write()


def dvc_cache_dir(repo_root: Path) -> Path:
    """Where a DVC project keeps its cache: .dvc/cache unless cache.dir says otherwise."""
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        return Path(repo.cache.local_cache_dir)


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


def check_workdir(workdir: Path) -> None:
    """--workdir must be a new or empty folder: checked before anything is looked up or cloned."""
    existing = next(p for p in (workdir, *workdir.parents) if p.exists())
    if not existing.is_dir():
        raise PipelineError(f"--workdir {workdir}: {existing} is a file, not a folder; name a new or empty folder, or leave "
                            "--workdir out for a new one under .cache/reproduce")
    if existing == workdir and any(workdir.iterdir()):
        raise PipelineError(f"--workdir {workdir}: exists and is not empty; name a new or empty folder")


def persistent_outs(workdir: Path, stages: Iterable[str]) -> list[Path]:
    """The `persist: true` outs of these stages (train's checkpoints): `dvc repro --force` keeps them, and a
    pulled checkpoint would let train resume instead of training from the start."""
    from dvc.repo import Repo

    wanted = set(stages)
    with Repo(str(workdir)) as repo:
        return [workdir / out.def_path for stage in repo.index.stages if getattr(stage, "name", None) in wanted
                for out in stage.outs if out.persist]


def clear_persistent_outs(workdir: Path, stages: Iterable[str]) -> None:
    for path in persistent_outs(workdir, stages):
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir(parents=True)
        elif path.exists():
            path.unlink()


def public_url(url: str | None) -> str | None:
    """A remote URL without user info, query or fragment: a tag anyone with read access sees must not carry a
    token (`user:token@`, or a signature such as `?sig=`). The host and port stay as written: parsing the port
    would fail on a malformed one, and an IPv6 host keeps its brackets."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: nothing can be told apart from a token, so no tag
        return None
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment=""))
