"""Test sets for the evaluate stage and the flat report built from their scores.

Four kinds of translation test set: the synthesized held-out split, WMT-style files (a source file
and one or more reference files for one direction), FLORES-style folders (one file per language,
so any pair of the languages present is a direction), and lexically constrained sets (BayLing's JSONL for
one direction: each row a source, a reference and the terms the translation must contain); the files are
read by bayling.core.test_sets, as decontamination and the tokenizer audit read them. Prompts for file-based
sets use BayLing's own translation prompt, and for constrained sets BayLing's constrained one, which adds
the terms (bayling.core.prompts).

An item's id is unique within its test set: file-based items are `{test set}:{direction}:{line}` (a
constrained set's line is its row's line in the JSONL), held-out
items carry their conversation's id (which names its direction). A FLORES-style set is multi-parallel, so
the same line number occurs in every direction; an id without the direction would send one direction's
outputs to all of them wherever outputs are looked up by id. Loading refuses a set with a repeated id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bayling.config.evaluate import EvalTestSet
from bayling.core.errors import PipelineError
from bayling.core.prompts import constrained_translation_prompt, translation_prompt
from bayling.core.records import Conversation, Message
from bayling.core.seeding import rank_key
from bayling.core.test_sets import ConstrainedRow, constrained_rows, direction_texts


@dataclass(frozen=True)
class TestItem:
    id: str
    direction: str
    src_lang: str
    tgt_lang: str
    prompt: list[Message]
    source: str
    references: tuple[str, ...]
    terms: tuple[str, ...] = ()  # a constrained set's item: what its translation must contain (bayling.evaluate.terms)

    @property
    def reference(self) -> str:
        return self.references[0]


def heldout_items(
    conversations: Iterable[Conversation], directions: Sequence[str] | None, per_direction: int | None, seed: int,
    name: str = "heldout",
) -> dict[str, list[TestItem]]:
    """Single-turn translation chats of the held-out split, up to `per_direction` each, by seeded hash order."""
    by_direction: dict[str, list[TestItem]] = defaultdict(list)
    for conv in conversations:
        if conv.task != "translate" or conv.messages[-1]["role"] != "assistant":
            continue
        direction = f"{conv.src_lang}-{conv.tgt_lang}"
        if directions is not None and direction not in directions:
            continue
        by_direction[direction].append(TestItem(
            id=conv.id, direction=direction, src_lang=conv.src_lang, tgt_lang=conv.tgt_lang,
            prompt=conv.messages[:-1], source=conv.messages[-2]["content"], references=(conv.messages[-1]["content"],),
        ))
    check_unique_ids(name, by_direction)  # before the cap, which would hide a repeat it cut off
    return {d: sorted(items, key=lambda i: rank_key(seed, i.id))[:per_direction] for d, items in sorted(by_direction.items())}


def file_items(
    name: str, sources: Sequence[str], references: Sequence[Sequence[str]], src: str, tgt: str, *,
    instruction_language: str = "en", system_prompt: str | None = None, limit: int | None = None,
) -> list[TestItem]:
    """Items for a file-based test set: BayLing's translation prompt around each source segment."""
    system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    items = []
    for i, source in enumerate(sources[:limit] if limit else sources):
        prompt = system + [{"role": "user", "content": translation_prompt(source, tgt, instruction_language)}]
        items.append(TestItem(item_id(name, f"{src}-{tgt}", i + 1), f"{src}-{tgt}", src, tgt, prompt, source,
                              tuple(ref[i] for ref in references)))
    return items


def constrained_items(
    name: str, rows: Sequence[ConstrainedRow], direction: str, *, instruction_language: str = "en",
    system_prompt: str | None = None, limit: int | None = None,
) -> list[TestItem]:
    """Items for a lexically constrained set: BayLing's constrained prompt (the translation request, then the terms)
    around each row's source, the first `limit` rows of the file."""
    src, tgt = direction.split("-")
    system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    items = []
    for row in rows[:limit] if limit else rows:
        content = constrained_translation_prompt(row.source, tgt, row.terms, instruction_language)
        items.append(TestItem(item_id(name, direction, row.line), direction, src, tgt, system + [{"role": "user", "content": content}],
                              row.source, (row.reference,), row.terms))
    return items


def item_id(test_set: str, direction: str, line: int) -> str:
    """The id of a file-based test item: its direction is part of it, as the line number repeats across directions."""
    return f"{test_set}:{direction}:{line}"


def check_unique_ids(name: str, items_by_direction: dict[str, list[TestItem]]) -> None:
    """Refuse a test set in which two items share an id: outputs matched by id would go to the wrong item."""
    seen: dict[str, str] = {}
    for direction, items in items_by_direction.items():
        for item in items:
            if item.id in seen:
                where = f"in {direction}" if seen[item.id] == direction else f"in {seen[item.id]} and in {direction}"
                raise PipelineError(f"test set {name}: item id {item.id!r} occurs twice ({where}); every item of a test set "
                                    "needs its own id")
            seen[item.id] = direction


def load_test_set(spec: EvalTestSet, root: Path, heldout: Iterable[Conversation] | None, seed: int) -> dict[str, list[TestItem]]:
    """Items per direction for one configured test set; every item id is unique in the set."""
    items = _load_items(spec, root, heldout, seed)
    check_unique_ids(spec.name, items)
    return items


def _load_items(spec: EvalTestSet, root: Path, heldout: Iterable[Conversation] | None, seed: int) -> dict[str, list[TestItem]]:
    directions = None if spec.directions == "all" else list(spec.directions)
    if spec.kind == "heldout":
        if heldout is None:
            raise PipelineError("the heldout test set needs data/synth/heldout.jsonl")
        return heldout_items(heldout, directions, spec.max_segments, seed, spec.name)
    if spec.kind == "constrained":
        direction = spec.direction or ""
        return {direction: constrained_items(spec.name, constrained_rows(spec, root), direction,
                                             instruction_language=spec.instruction_language, system_prompt=spec.system_prompt,
                                             limit=spec.max_segments)}
    return {
        texts.direction: file_items(spec.name, texts.sources, texts.references, *texts.direction.split("-"),
                                    instruction_language=spec.instruction_language, system_prompt=spec.system_prompt,
                                    limit=spec.max_segments)
        for texts in direction_texts(spec, root)
    }
