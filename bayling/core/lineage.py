"""Lineage: git state, DVC out hashes and tokenizer fingerprints that tie a model to what made it."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "tokenizer.model",
)


def git_state(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or "unknown", "dirty": bool(status) if status is not None else None}


def dvc_lock_outs(root: Path) -> dict[str, str]:
    """{out path: md5} for every stage output recorded in dvc.lock."""
    path = root / "dvc.lock"
    if not path.exists():
        return {}
    lock = yaml.safe_load(path.read_text("utf-8")) or {}
    outs: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if "md5" in out:
                outs[out["path"]] = out["md5"]
    return outs


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Files written into a model directory after training that are not the model: register's Hugging Face model
# card. Leaving them out keeps a model's identity (and evaluate's generation cache key) the same when only
# its card changed, so re-evaluating the same weights re-uses their registered version.
NOT_MODEL_FILES = frozenset({"README.md"})


def directory_sha256(directory: Path, exclude: frozenset[str] = NOT_MODEL_FILES) -> str:
    """One digest over every file's relative path and content, in sorted order, leaving out the files
    whose path relative to `directory` is in `exclude` (by default the model card)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.relative_to(directory).as_posix() not in exclude):
        digest.update(str(path.relative_to(directory)).encode() + b"\x00")
        with open(path, "rb") as handle:
            hashlib.file_digest(handle, lambda: digest)  # continues the running digest
    return digest.hexdigest()


def tokenizer_fingerprint(model_dir: Path, chat_template: str, max_seq_len: int, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hash of everything that decides the rows: the base tokenizer's files, the chat template, the
    maximum length, and the template, masking, truncation and packing settings."""
    files = {
        name: sha256_bytes((model_dir / name).read_bytes())
        for name in TOKENIZER_FILES
        if (model_dir / name).is_file()
    }
    payload = {
        "tokenizer_files": files,
        "chat_template_sha256": sha256_bytes(chat_template.encode()),
        "max_seq_len": max_seq_len,
        "settings": settings or {},
    }
    payload["fingerprint"] = sha256_bytes(json.dumps(payload, sort_keys=True).encode())
    return payload


def tokenizer_only_fingerprint(fingerprint: dict[str, Any]) -> str:
    """The part of a fingerprint that must match between tokenize and train: the base tokenizer and the template."""
    core = {k: fingerprint[k] for k in ("tokenizer_files", "chat_template_sha256")}
    return sha256_bytes(json.dumps(core, sort_keys=True).encode())


def default_remote_url(root: Path) -> str | None:
    """The URL of the project's default DVC remote, as DVC resolves it (config.local included), if one is set."""
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            config = repo.config
            name = config.get("core", {}).get("remote")
            return config.get("remote", {}).get(name, {}).get("url") if name else None
    except Exception:  # no DVC repository here, or a config DVC itself refuses: the tag is informative only
        return None
