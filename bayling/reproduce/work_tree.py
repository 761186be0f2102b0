"""The work tree a rebuild runs in: which stages re-run, a clone at the recorded commit with the project's local
DVC settings, and those settings' credentials taken out again once the pull no longer needs them."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bayling.core.errors import PipelineError
from bayling.register.lineage_tags import public_url
from bayling.reproduce.record import RecordedVersion


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
