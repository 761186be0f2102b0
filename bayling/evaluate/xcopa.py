"""Multilingual understanding by log-likelihood multiple choice (XCOPA format): which continuation of the
premise does the model find more probable? Scored in batches; optionally normalised by length."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from bayling.core.errors import PipelineError


@cache
def connectors() -> dict[str, tuple[str, str, str]]:
    text = resources.files("bayling.evaluate.resources").joinpath("xcopa_connectors.tsv").read_text("utf-8")
    table = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        lang, cause, effect, joiner = (line.split("\t") + [""])[:4]
        table[lang] = (cause, effect, joiner)
    return table


@dataclass(frozen=True)
class ChoiceItem:
    context: str
    choices: tuple[str, ...]
    label: int


def _lower_first(text: str, lang: str) -> str:
    if not text:
        return text
    if lang == "tr":  # dotted and dotless i
        return {"İ": "i", "I": "ı"}.get(text[0], text[0].lower()) + text[1:]
    return text[0].lower() + text[1:]


def xcopa_item(row: dict[str, Any], lang: str) -> ChoiceItem:
    """Premise (final punctuation dropped) + joiner + connector; choices continue it."""
    if lang not in connectors():
        raise PipelineError(f"no XCOPA connectors for language '{lang}'; known: {', '.join(sorted(connectors()))}")
    cause, effect, joiner = connectors()[lang]
    premise = row["premise"].strip()
    if premise and unicodedata.category(premise[-1]).startswith("P"):
        premise = premise[:-1]
    connector = cause if row["question"] == "cause" else effect
    spaced = lang not in ("zh",)
    context = f"{premise}{joiner}{connector}"
    choices = tuple((" " if spaced else "") + _lower_first(row[key].strip(), lang) for key in ("choice1", "choice2"))
    return ChoiceItem(context, choices, int(row["label"]))


def read_xcopa(path: Path, lang: str, limit: int | None = None) -> list[ChoiceItem]:
    items = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                items.append(xcopa_item(json.loads(line), lang))
            except (json.JSONDecodeError, KeyError) as exc:
                raise PipelineError(f"{path}:{lineno}: not an XCOPA row ({exc})") from None
            if limit and len(items) >= limit:
                break
    return items


def continuation_logprobs(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], batch_size: int = 16) -> list[tuple[float, int]]:
    """(sum of log-probabilities, token count) of each continuation given its context, batched.

    The context and continuation are tokenized together; the continuation's tokens are those past the
    context's own tokenization, so a merge across the boundary is scored as part of the continuation.
    """
    import torch

    encoded = []
    for context, continuation in pairs:
        context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        shared = 0
        while shared < min(len(context_ids), len(full_ids)) and context_ids[shared] == full_ids[shared]:
            shared += 1
        encoded.append((full_ids, max(1, shared)))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
    order = sorted(range(len(pairs)), key=lambda i: -len(encoded[i][0]))
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        width = max(len(encoded[i][0]) for i in index)
        ids = torch.full((len(index), width), pad, dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            seq = encoded[i][0]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = ids[:, 1:].to(model.device)
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, i in enumerate(index):
            seq, shared = encoded[i]
            scored = token_lp[row, shared - 1 : len(seq) - 1]
            out[i] = (float(scored.sum()), int(scored.numel()))
    return out


def accuracy(items: Sequence[ChoiceItem], scores: Iterable[tuple[float, int]], length_normalized: bool = False) -> float:
    scores = list(scores)
    correct, cursor = 0, 0
    for item in items:
        options = scores[cursor : cursor + len(item.choices)]
        cursor += len(item.choices)
        values = [lp / max(1, n) if length_normalized else lp for lp, n in options]
        correct += int(max(range(len(values)), key=values.__getitem__) == item.label)
    return correct / len(items) if items else 0.0


def evaluate_choices(
    model: Any, tokenizer: Any, items: Sequence[ChoiceItem], batch_size: int = 16, length_normalized: bool = False
) -> float:
    pairs = [(item.context, choice) for item in items for choice in item.choices]
    return accuracy(items, continuation_logprobs(model, tokenizer, pairs, batch_size), length_normalized)
