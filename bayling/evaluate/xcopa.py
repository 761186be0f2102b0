"""Multilingual understanding by log-likelihood multiple choice, scored the way lm-evaluation-harness scores it,
so that XCOPA numbers can be set beside published lm-eval tables.

What lm-eval does (EleutherAI/lm-evaluation-harness, read at 4e7e0d47f33bc71070c1d38394bafbb52b117163 and v0.4.9.2):

* lm_eval/tasks/xcopa/utils.py, default_*.yaml: ``doc_to_text`` is ``doc["premise"].strip()[:-1] + f" {conn}"``
  (the last character is dropped whatever it is: a Thai premise without a full stop loses a letter),
  the connector per language and question is in our resources/xcopa_connectors.tsv; ``doc_to_choice`` is
  ``choice[0].lower() + choice[1:]`` for choice1 and choice2 (Python's str.lower: "İ" becomes "i" + U+0307,
  "I" becomes "i", no Turkish rule, no strip); ``doc_to_target: label``; ``output_type: multiple_choice``;
  metric ``acc`` only; the xcopa group averages acc weighted by size (_xcopa.yaml).
  English (not in XCOPA) follows lm_eval/tasks/super_glue/copa/utils.py: "because"/"therefore", and its
  choices carry a leading space of their own (so the continuation starts with two spaces).
* lm_eval/config/task.py (TaskConfig; lm_eval/api/task.py in older releases): ``target_delimiter = " "``,
  ``description = ""``; lm_eval/api/task.py ``fewshot_context``/``build_qa_turn``: at zero shot the context is
  doc_to_text itself; ``construct_requests``: one request ``(ctx, f"{target_delimiter}{choice}")`` per choice;
  ``process_results``: ``pred = np.argmax(lls)``, ``pred_norm = np.argmax(lls / completion_len)`` with
  ``completion_len = len(choice)`` in characters of the choice *without* the delimiter; acc and acc_norm are
  1.0 when pred (pred_norm) equals the gold index (the first maximum wins a tie).
* lm_eval/api/model.py ``TemplateLM.loglikelihood``/``_encode_pair``: trailing whitespace of the context moves
  to the front of the continuation; ``whole = tok_encode(context + continuation)``,
  ``context_enc = tok_encode(context)``, ``continuation_enc = whole[len(context_enc):]``; an empty context is
  ``[prefix_token_id]`` (BOS, else EOS) unless the continuation starts with that token.
  lm_eval/models/huggingface.py ``tok_encode``: ``tokenizer.encode(string)`` with the tokenizer's own
  add_special_tokens default unless ``add_bos_token`` is given, and none when the string already starts with
  the BOS text (lm_eval/models/utils.py ``has_bos_prefix``); up to v0.4.9.1 a causal model's default was
  ``add_special_tokens=False`` (no BOS, except Gemma: ``add_bos=False`` here). ``_loglikelihood_tokens``: the model reads
  ``(context_enc + continuation_enc)[-(max_length + 1):][:-1]`` and the score is the sum of the log-softmax
  at the continuation tokens; both encodings must be non-empty.

The log-softmax is taken in float32 (lm-eval's ``softmax_dtype=float32``; its default is the model's dtype).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from bayling.core.errors import PipelineError
from bayling.evaluate.outcomes import ItemOutcome, UnderstandingRun

# lm_eval/tasks/super_glue/copa/utils.py: doc_to_choice returns " " + convert_choice(choice)
_CHOICE_PREFIX = {"en": " "}
_DEFAULT_MAX_LENGTH = 2048  # lm_eval/models/utils.py DEFAULT_MAX_LENGTH, when neither config nor tokenizer says
_TOKENIZER_INFINITY = 1000000000000000019884624838656


@cache
def connectors() -> dict[str, tuple[str, str]]:
    """{language: (cause connector, effect connector)}, as lm-eval's xcopa (and copa, for en) tasks have them."""
    text = resources.files("bayling.evaluate.resources").joinpath("xcopa_connectors.tsv").read_text("utf-8")
    table = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        lang, cause, effect = line.split("\t")[:3]
        table[lang] = (cause, effect)
    return table


@dataclass(frozen=True)
class ChoiceItem:
    """One multiple-choice document: the context, the choices as doc_to_choice gives them, the gold index, and
    lm-eval's hash of the document as read (lm_eval/evaluator.py: sha256 of json.dumps(doc, indent=2,
    ensure_ascii=False)), which pairs this item with lm-eval's own record of it."""

    context: str
    choices: tuple[str, ...]
    label: int
    target_delimiter: str = " "
    doc_hash: str = field(default="", compare=False)  # where the item came from, not what it asks

    def requests(self) -> list[tuple[str, str]]:
        """lm-eval's (context, continuation) pairs: one per choice, the delimiter in the continuation."""
        return [(self.context, f"{self.target_delimiter}{choice}") for choice in self.choices]


class _RowError(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(f"field '{field}': {problem}")


def _field(row: Any, name: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(row, dict):
        raise _RowError(name, "the row is not a JSON object")
    if name not in row:
        raise _RowError(name, "missing")
    value = row[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _RowError(name, f"expected {what}, got {type(value).__name__}")
    return value


def _lower_first(choice: str) -> str:
    return choice[0].lower() + choice[1:]  # lm_eval/tasks/xcopa/utils.py convert_choice, as it is


def _xcopa_item(row: Any, lang: str, target_delimiter: str) -> ChoiceItem:
    cause, effect = connectors()[lang]
    premise = _field(row, "premise", str, "a string")
    question = _field(row, "question", str, "a string")
    if question not in ("cause", "effect"):
        raise _RowError("question", f"expected 'cause' or 'effect', got {question!r}")
    choices = []
    for key in ("choice1", "choice2"):
        choice = _field(row, key, str, "a string")
        if not choice:
            raise _RowError(key, "empty")
        choices.append(_CHOICE_PREFIX.get(lang, "") + _lower_first(choice))
    label = _field(row, "label", int, "0 or 1")
    if label not in (0, 1):
        raise _RowError("label", f"expected 0 or 1, got {label}")
    context = premise.strip()[:-1] + " " + (cause if question == "cause" else effect)
    return ChoiceItem(context, tuple(choices), label, target_delimiter)


def _check_language(lang: str) -> None:
    if lang not in connectors():
        raise PipelineError(f"no XCOPA connectors for language '{lang}'; known: {', '.join(sorted(connectors()))}")


def xcopa_item(row: dict[str, Any], lang: str, target_delimiter: str = " ") -> ChoiceItem:
    """An XCOPA row as lm-eval's xcopa_<lang> task poses it."""
    _check_language(lang)
    try:
        return _xcopa_item(row, lang, target_delimiter)
    except _RowError as exc:
        raise PipelineError(f"not an XCOPA row: {exc}") from None


def _choice_item(row: Any, context: str, choices: str, gold: str, target_delimiter: str) -> ChoiceItem:
    text = _field(row, context, str, "a string")
    options = _field(row, choices, list, "a list of strings")
    if len(options) < 2:
        raise _RowError(choices, f"expected at least 2 choices, got {len(options)}")
    for i, option in enumerate(options):
        if not isinstance(option, str) or not option:
            raise _RowError(choices, f"choice {i} is not a non-empty string")
    answer = _field(row, gold, (int, str), "an index into the choices or the text of one")
    if isinstance(answer, str) and answer.isdigit():  # lm_eval/api/task.py doc_to_target: a digit string is an index
        answer = int(answer)
    if isinstance(answer, str):  # lm_eval/api/task.py process_results: gold = choices.index(gold)
        if answer not in options:
            raise _RowError(gold, f"{answer!r} is none of the choices")
        answer = options.index(answer)
    elif not 0 <= answer < len(options):
        raise _RowError(gold, f"index {answer} is out of range for {len(options)} choices")
    return ChoiceItem(text, tuple(options), answer, target_delimiter)


def document_hash(row: Any) -> str:
    return hashlib.sha256(json.dumps(row, indent=2, ensure_ascii=False).encode("utf-8")).hexdigest()


def _read_rows(path: Path, make: Callable[[Any], ChoiceItem], limit: int | None) -> list[ChoiceItem]:
    items = []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items.append(replace(make(row), doc_hash=document_hash(row)))
            except json.JSONDecodeError as exc:
                raise PipelineError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            except _RowError as exc:
                raise PipelineError(f"{path}:{lineno}: {exc}") from None
            if limit and len(items) >= limit:
                break
    if not items:
        raise PipelineError(f"{path}: no rows")
    return items


def read_xcopa(path: Path, lang: str, limit: int | None = None, target_delimiter: str = " ") -> list[ChoiceItem]:
    """An XCOPA JSONL file (premise, choice1, choice2, question, label), posed as lm-eval's xcopa_<lang>."""
    _check_language(lang)
    return _read_rows(path, lambda row: _xcopa_item(row, lang, target_delimiter), limit)


def read_choices(
    path: Path,
    context: str = "query",
    choices: str = "choices",
    gold: str = "gold",
    limit: int | None = None,
    target_delimiter: str = " ",
) -> list[ChoiceItem]:
    """Any lm-eval-style multiple-choice JSONL: the context (doc_to_text) as it is, a list of choices
    (doc_to_choice) and the gold choice, by index or by its text. The default field names are those of lm-eval's
    processed documents (lm_eval/tasks/hellaswag/utils.py: query, choices, gold). Errors name file, line and field."""
    return _read_rows(path, lambda row: _choice_item(row, context, choices, gold, target_delimiter), limit)


def read_set(spec: Any, lang: str, folder: Path) -> list[ChoiceItem]:
    """One subset of a configured multiple-choice set (bayling.config.evaluate.XcopaParams)."""
    path = folder / spec.pattern.format(lang=lang, split=spec.split)
    if spec.format == "xcopa":
        return read_xcopa(path, lang, spec.max_items, spec.target_delimiter)
    fields = spec.fields
    return read_choices(path, fields.context, fields.choices, fields.gold, spec.max_items, spec.target_delimiter)


def _prefix_token_id(tokenizer: Any) -> int | None:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def _encode(tokenizer: Any, text: str, add_bos: bool | None) -> list[int]:
    """lm_eval/models/huggingface.py tok_encode (add_special_tokens=None)."""
    if add_bos is not None:
        return list(tokenizer.encode(text, add_special_tokens=add_bos))
    prefix = _prefix_token_id(tokenizer)
    if prefix is not None and text.startswith(tokenizer.decode(prefix)):
        return list(tokenizer.encode(text, add_special_tokens=False))
    return list(tokenizer.encode(text))


def encode_pair(tokenizer: Any, context: str, continuation: str, add_bos: bool | None = None) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) exactly as lm-eval's loglikelihood/_encode_pair split them."""
    if context == "":
        continuation_enc = list(tokenizer.encode(continuation, add_special_tokens=False))
        prefix = _prefix_token_id(tokenizer)
        if continuation_enc and prefix == continuation_enc[0]:
            return continuation_enc[:1], continuation_enc[1:]
        return [prefix], continuation_enc
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _encode(tokenizer, context + continuation, add_bos)
    context_enc = _encode(tokenizer, context, add_bos)
    return context_enc, whole[len(context_enc) :]


def _max_length(model: Any, tokenizer: Any) -> int:
    """lm_eval/models/utils.py resolve_max_length, for a text model: config, then tokenizer, then 2048."""
    config = getattr(model, "config", None)
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, int) and 0 < length < _TOKENIZER_INFINITY:
        return length
    return _DEFAULT_MAX_LENGTH


def loglikelihoods(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
    add_bos: bool | None = None,
    max_length: int | None = None,
) -> list[float]:
    """The log-likelihood of each continuation given its context, as lm-eval's HF model computes it, batched
    (longest first, right-padded); the batch size does not change which tokens are scored."""
    import torch

    limit = max_length or _max_length(model, tokenizer)
    inputs = []
    for context, continuation in pairs:
        context_enc, continuation_enc = encode_pair(tokenizer, context, continuation, add_bos)
        if not context_enc or not continuation_enc or context_enc[0] is None:
            raise PipelineError(f"({context!r}, {continuation!r}): the context or the continuation has no tokens")
        if len(continuation_enc) > limit:
            raise PipelineError(f"({context!r}, {continuation!r}): the continuation is longer than {limit} tokens")
        inputs.append(((context_enc + continuation_enc)[-(limit + 1) :][:-1], continuation_enc))
    out = [0.0] * len(pairs)
    order = sorted(range(len(pairs)), key=lambda i: -len(inputs[i][0]))
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        width = max(len(inputs[i][0]) for i in index)
        ids = torch.full((len(index), width), pad, dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            seq = inputs[i][0]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        # the vocabulary projection and its log-softmax only where a continuation token is predicted (each row's last
        # n positions), not at every position: the rest of a row's logits are never read
        keep = torch.zeros((len(index), width), dtype=torch.bool)
        for row, i in enumerate(index):
            seq, continuation_enc = inputs[i]
            keep[row, len(seq) - len(continuation_enc) : len(seq)] = True
        with torch.inference_mode():
            logits = _kept_logits(model, ids, mask, keep)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        cursor = 0
        for i in index:
            continuation_enc = inputs[i][1]
            n = len(continuation_enc)
            targets = torch.tensor(continuation_enc, device=logprobs.device).unsqueeze(-1)
            out[i] = float(logprobs[cursor : cursor + n].gather(-1, targets).sum())
            cursor += n
    return out


def _kept_logits(model: Any, ids: Any, mask: Any, keep: Any) -> Any:
    """The logits at the `keep` positions, flattened row by row: transformers' logits_to_keep with a boolean mask
    projects only those hidden states; a model without it gives every position's logits, and they are picked here."""
    device = model.device
    try:
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep.to(device)).logits
    except TypeError:  # a forward without logits_to_keep
        return model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[keep.to(device)]
    return logits if logits.dim() == 2 else logits[keep.to(device)]


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # the first maximum, as np.argmax


def item_scores(items: Sequence[ChoiceItem], lls: Iterable[float]) -> list[dict[str, float]]:
    """Each item's acc and acc_norm (1.0 or 0.0) as lm-eval's process_results gives them: the highest log-likelihood,
    and the highest log-likelihood over the choice's length in characters."""
    lls = list(lls)
    if len(lls) != sum(len(item.choices) for item in items):
        raise PipelineError(f"{len(lls)} log-likelihoods for {sum(len(i.choices) for i in items)} choices")
    out = []
    cursor = 0
    for item in items:
        values = lls[cursor : cursor + len(item.choices)]
        cursor += len(item.choices)
        out.append({"acc": float(_argmax(values) == item.label),
                    "acc_norm": float(_argmax([ll / len(choice) for ll, choice in zip(values, item.choices)]) == item.label)})
    return out


def choice_metrics(items: Sequence[ChoiceItem], lls: Iterable[float]) -> dict[str, float]:
    """lm-eval's acc and acc_norm, averaged over items."""
    scores = item_scores(items, lls)
    n = len(scores)
    return {m: sum(s[m] for s in scores) / n if n else 0.0 for m in ("acc", "acc_norm")}


def accuracy(items: Sequence[ChoiceItem], lls: Iterable[float], length_normalized: bool = False) -> float:
    """acc, or acc_norm when length_normalized."""
    return choice_metrics(items, lls)["acc_norm" if length_normalized else "acc"]


def outcomes(task: str, items: Sequence[ChoiceItem], lls: Iterable[float]) -> list[ItemOutcome]:
    """Each item's outcome as lm-eval records it for task `task` (its doc_id, document and prompt hashes, acc, acc_norm)."""
    return [ItemOutcome(task, i, item.doc_hash, hashlib.sha256(item.context.encode("utf-8")).hexdigest(), scores)
            for i, (item, scores) in enumerate(zip(items, item_scores(items, lls)))]


def score_choices(
    model: Any, tokenizer: Any, items: Sequence[ChoiceItem], batch_size: int = 16, add_bos: bool | None = None
) -> dict[str, float]:
    """{"acc": ..., "acc_norm": ...} of the model on the items."""
    pairs = [pair for item in items for pair in item.requests()]
    return choice_metrics(items, loglikelihoods(model, tokenizer, pairs, batch_size, add_bos))


def evaluate_choices(
    model: Any, tokenizer: Any, items: Sequence[ChoiceItem], batch_size: int = 16, length_normalized: bool = False
) -> float:
    return score_choices(model, tokenizer, items, batch_size)["acc_norm" if length_normalized else "acc"]


def evaluate_sets(
    specs: Sequence[Any], model: Any, tokenizer: Any, label: str, resolve: Callable[[str], Path], batch_size: int
) -> UnderstandingRun:
    """{name}.{subset}.{label}.acc and .acc_norm (lm-eval's) per subset of each configured set, and {name}.avg.{label}.*
    averaged over the subsets weighted by their size (lm-eval's group aggregation), with each item's outcome recorded
    as lm-eval records it (task {name}_{subset})."""
    import time

    run = UnderstandingRun()
    started = time.perf_counter()
    for spec in specs:
        sums = {"acc": 0.0, "acc_norm": 0.0}
        total = 0
        for lang in spec.languages:
            items = read_set(spec, lang, resolve(spec.dir))
            pairs = [pair for item in items for pair in item.requests()]
            lls = loglikelihoods(model, tokenizer, pairs, batch_size, spec.add_bos)
            run.outcomes.setdefault(spec.name, {})[lang] = outcomes(f"{spec.name}_{lang}", items, lls)
            for key, value in choice_metrics(items, lls).items():
                run.metrics[f"{spec.name}.{lang}.{label}.{key}"] = round(value, 4)
                sums[key] += value * len(items)
            total += len(items)
        for key, value in sums.items():
            run.metrics[f"{spec.name}.avg.{label}.{key}"] = round(value / total, 4)
        run.items += total
    run.seconds = time.perf_counter() - started
    return run
