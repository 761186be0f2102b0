"""Test sets for the evaluate stage and the flat report built from their scores.

Three kinds of translation test set: the synthesized held-out split, WMT-style files (a source file
and one or more reference files for one direction), and FLORES-style folders (one file per language,
so any pair of the languages present is a direction). Prompts for file-based sets use BayLing's own
translation prompt.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayling.errors import PipelineError
from bayling.metrics import Scores, macro_average, read_segments
from bayling.prompts import translation_prompt

METRICS = ("bleu", "chrf", "chrf_pp")
DIRECTION = re.compile(r"^[a-z]{3}_[A-Za-z]{4}-[a-z]{3}_[A-Za-z]{4}$")


@dataclass(frozen=True)
class TestItem:
    id: str
    direction: str
    src_lang: str
    tgt_lang: str
    prompt: list[dict[str, str]]
    source: str
    references: tuple[str, ...]

    @property
    def reference(self) -> str:
        return self.references[0]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()


def heldout_items(
    conversations: Iterable[dict[str, Any]], directions: Sequence[str] | None, per_direction: int | None, seed: int
) -> dict[str, list[TestItem]]:
    """Single-turn translation chats of the held-out split, up to `per_direction` each, by seeded hash order."""
    by_direction: dict[str, list[TestItem]] = defaultdict(list)
    for conv in conversations:
        meta = conv["meta"]
        if meta.get("task") != "translate" or conv["messages"][-1]["role"] != "assistant":
            continue
        direction = f"{meta['src_lang']}-{meta['tgt_lang']}"
        if directions is not None and direction not in directions:
            continue
        by_direction[direction].append(TestItem(
            id=conv["id"], direction=direction, src_lang=meta["src_lang"], tgt_lang=meta["tgt_lang"],
            prompt=conv["messages"][:-1], source=conv["messages"][-2]["content"],
            references=(conv["messages"][-1]["content"],),
        ))
    return {d: sorted(items, key=lambda i: _rank(seed, i.id))[:per_direction] for d, items in sorted(by_direction.items())}


def file_items(
    name: str, sources: Sequence[str], references: Sequence[Sequence[str]], src: str, tgt: str, *,
    instruction_language: str = "en", system_prompt: str | None = None, limit: int | None = None,
) -> list[TestItem]:
    """Items for a file-based test set: BayLing's translation prompt around each source segment."""
    system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    items = []
    for i, source in enumerate(sources[:limit] if limit else sources):
        prompt = system + [{"role": "user", "content": translation_prompt(source, tgt, instruction_language)}]
        items.append(TestItem(f"{name}:{i + 1}", f"{src}-{tgt}", src, tgt, prompt, source, tuple(ref[i] for ref in references)))
    return items


def load_test_set(spec: Any, root: Path, heldout: Iterable[dict[str, Any]] | None, seed: int) -> dict[str, list[TestItem]]:
    """Items per direction for one configured test set (see EvalTestSet in bayling.params)."""
    directions = None if spec.directions == "all" else list(spec.directions)
    if spec.kind == "heldout":
        if heldout is None:
            raise PipelineError("the heldout test set needs data/synth/heldout.jsonl")
        return heldout_items(heldout, directions, spec.max_segments, seed)
    if spec.kind == "wmt":
        src, tgt = spec.direction.split("-")
        sources = read_segments(root / spec.src, f"test set {spec.name} source")
        references = [read_segments(root / ref, f"test set {spec.name} reference") for ref in spec.refs]
        for ref_path, stream in zip(spec.refs, references):
            if len(stream) != len(sources):
                raise PipelineError(f"test set {spec.name}: {spec.src} has {len(sources)} lines but {ref_path} has {len(stream)}")
        return {spec.direction: file_items(spec.name, sources, references, src, tgt, instruction_language=spec.instruction_language,
                                           system_prompt=spec.system_prompt, limit=spec.max_segments)}
    folder = root / spec.dir  # an absolute dir stays absolute
    texts: dict[str, list[str]] = {}
    for direction in directions or []:
        for code in direction.split("-"):
            if code not in texts:
                texts[code] = read_segments(folder / spec.pattern.format(code=code), f"test set {spec.name} ({code})")
    lengths = {len(v) for v in texts.values()}
    if len(lengths) > 1:
        raise PipelineError(f"test set {spec.name}: files in {spec.dir} differ in length: " + ", ".join(f"{c} {len(v)}" for c, v in texts.items()))
    out = {}
    for direction in directions or []:
        src, tgt = direction.split("-")
        out[direction] = file_items(spec.name, texts[src], [texts[tgt]], src, tgt, instruction_language=spec.instruction_language,
                                    system_prompt=spec.system_prompt, limit=spec.max_segments)
    return out


# ---------------------------------------------------------------- the report
def flat_scores(test_set: str, model: str, scores: dict[str, Scores]) -> dict[str, float]:
    """`{test_set}.{direction}.{model}.{metric}` and `{test_set}.avg.{model}.{metric}` keys."""
    flat = {f"{test_set}.{d}.{model}.{m}": round(getattr(s, m), 4) for d, s in scores.items() for m in METRICS}
    flat.update({f"{test_set}.avg.{model}.{m}": round(v, 4) for m, v in macro_average(list(scores.values())).items()})
    return flat


def deltas(flat: dict[str, float], test_set: str, before: str = "base", after: str = "final") -> dict[str, float]:
    out = {}
    for key, value in flat.items():
        parts = key.split(".")
        if parts[0] == test_set and parts[-2] == after:
            other = ".".join(parts[:-2] + [before, parts[-1]])
            if other in flat:
                out[".".join(parts[:-2] + ["delta", parts[-1]])] = round(value - flat[other], 4)
    return out


def averages(metrics: dict[str, Any], test_set: str, model: str) -> dict[str, float]:
    """The macro averages of one model on one test set, read back from the flat report."""
    prefix = f"{test_set}.avg.{model}."
    return {key[len(prefix):]: value for key, value in metrics.items() if key.startswith(prefix)}


def per_language_rows(metrics: dict[str, Any], test_sets: Sequence[str], models: Sequence[str]) -> list[dict[str, Any]]:
    """One row per test set and direction, with each model's BLEU, chrF and chrF++ side by side."""
    rows = []
    for test_set in test_sets:
        directions = sorted({k.split(".")[1] for k in metrics if k.startswith(f"{test_set}.") and DIRECTION.match(k.split(".")[1])})
        for direction in directions:
            src, tgt = direction.split("-")
            row: dict[str, Any] = {"test_set": test_set, "direction": direction, "src_lang": src, "tgt_lang": tgt}
            for model in models:
                for m in METRICS:
                    row[f"{model}_{m}"] = metrics.get(f"{test_set}.{direction}.{model}.{m}")
            rows.append(row)
    return rows
