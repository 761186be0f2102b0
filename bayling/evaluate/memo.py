"""Generated outputs remembered by everything that determines them, so that a model nobody changed is not
asked the same prompts again.

Evaluate generates with the base model on every run, although the base model, the test set and the
decoding settings rarely change between retrains, and it re-translates a champion's segments each time
a new split appears. Greedy decoding is a pure function of (model files, prompts, decoding settings,
the generation code, the torch and transformers versions that run it); the key below hashes all of
them, so a hit returns exactly what generation would, and anything that could change an output is a
miss. DVC cannot hold this: the evaluate stage's deps include the fine-tuned model, so a retrain
re-runs the whole stage. The entries are plain JSON files under evaluate.generation_cache (gitignored
.cache/ by default), written atomically; deleting the folder only costs time. Each entry holds its own key
and a checksum of its outputs, so a file copied or renamed under another key, or damaged on disk, is a
miss (with a warning) that is generated and written again, never outputs served for other prompts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bayling.config.evaluate import EvaluateParams
from bayling.core.errors import PipelineError
from bayling.core.records import Message
from bayling.evaluate.engines import Replier, cacheable

log = logging.getLogger(__name__)


def _model_digest(model_dir: Path) -> str:
    from bayling.core.lineage import directory_sha256

    return directory_sha256(model_dir)


def generation_key(model_dir: Path, conversations: Sequence[Sequence[Message]], settings: dict[str, Any]) -> str:
    import torch
    import transformers

    from bayling.evaluate import engines
    from bayling.models import generation

    parts = {
        "model": _model_digest(model_dir),
        "prompts": hashlib.sha256(json.dumps([list(c) for c in conversations], ensure_ascii=False, sort_keys=True).encode()).hexdigest(),
        "settings": settings,
        "code": hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (generation, engines))).hexdigest(),
        "versions": [torch.__version__, transformers.__version__],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def check_cache_dir(cache_dir: Path) -> None:
    """Refuse an evaluate.generation_cache that cannot be a folder (it, or a folder above it, is a file), before
    anything is generated: the outputs would be lost when the first entry could not be written."""
    existing = next((p for p in (cache_dir, *cache_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise PipelineError(f"evaluate.generation_cache: {existing} is a file, not a folder; point the setting at a folder "
                            "(it is created when missing) or set it to null to turn the cache off")


def outputs_checksum(outputs: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(outputs), ensure_ascii=False).encode("utf-8")).hexdigest()


def remembered(cache_dir: Path | None, model_dir: Path, conversations: Sequence[Sequence[Message]], settings: dict[str, Any],
               produce: Callable[[], list[str]]) -> tuple[list[str], bool]:
    """`produce()`'s outputs, from the cache when the same model was asked the same prompts the same way
    before; returns (outputs, whether they came from the cache)."""
    if cache_dir is None:
        return produce(), False
    from bayling.core.storage import atomic_writer

    check_cache_dir(cache_dir)
    key = generation_key(model_dir, conversations, settings)
    path = cache_dir / f"{key}.json"
    if path.is_file():
        outputs = _entry_outputs(path, key, len(conversations))
        if outputs is not None:
            return outputs, True
    outputs = produce()
    if len(outputs) != len(conversations):
        raise ValueError(f"{len(outputs)} outputs for {len(conversations)} prompts")
    entry = {"key": key, "prompts": len(conversations), "checksum": outputs_checksum(outputs), "outputs": outputs}
    try:
        with atomic_writer(path) as handle:
            handle.write(json.dumps(entry, ensure_ascii=False))
    except OSError as exc:  # the outputs are in hand: a cache that cannot take them costs the next run time, not this one
        log.warning("could not write generation cache entry %s (%s); the next run generates these outputs again", path, exc)
    return outputs, False


def _entry_outputs(path: Path, key: str, count: int) -> list[str] | None:
    """An entry's outputs, one per prompt in prompt order, or None (a miss, with a warning) for an entry that is
    unreadable, written under another key (a renamed or copied file), for another number of prompts, or whose
    outputs no longer match the checksum written with them."""
    outputs, problem = _read_entry(path, key, count)
    if problem is not None:
        log.warning("ignoring generation cache entry %s: %s; generating its outputs again", path, problem)
    return outputs


def _read_entry(path: Path, key: str, count: int) -> tuple[list[str] | None, str | None]:
    try:
        entry = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "not UTF-8 JSON"
    outputs = entry.get("outputs") if isinstance(entry, dict) else None
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        return None, "not an object with a list of output strings"
    if "key" not in entry or "checksum" not in entry:
        return None, "written without its key and checksum (by an older version)"
    if entry["key"] != key or entry.get("prompts") != count or len(outputs) != count:
        return None, "it was written for other prompts"
    if entry["checksum"] != outputs_checksum(outputs):
        return None, "its outputs do not match their checksum (damaged or edited)"
    return outputs, None


def translations(params: EvaluateParams, replier: Replier, model_dir: Path, prompts: list[list[Message]],
                 cache_dir: Path | None, budgets: list[int] | None = None) -> tuple[list[str], bool]:
    """The model's raw replies to translation prompts, remembered across runs for an unchanged model; each prompt
    generates at most its budget (evaluate.budget) or max_new_tokens."""
    settings = {**replier.settings(), "max_new_tokens": params.max_new_tokens, "first_line_only": True}
    if budgets is not None:
        settings["budgets"] = hashlib.sha256(json.dumps(budgets).encode()).hexdigest()
    limit: int | list[int] = budgets if budgets is not None else params.max_new_tokens
    return remembered(cache_dir if cacheable(replier) else None, model_dir, prompts, settings,
                      lambda: replier(prompts, max_new_tokens=limit, first_line_only=True))
