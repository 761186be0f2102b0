"""How many tokens a translation may take, from its source: the budget each prompt is generated with.

A flat `max_new_tokens` is wrong both ways. The same sentence takes SmolLM2's tokenizer 2.6 times the tokens
in Chinese as in English (the default corpus), so 96 tokens cut 17 of the first 50 FLORES references into
Chinese short, while a model that loops into English runs on for 96 tokens that only lower its score. A
row's budget is therefore

    ceil(per_source_token * source tokens * rate(target) / rate(source)) + extra,  at most max_new_tokens,

where a language's rate is its tokens per segment against English's on the aligned rows of the training
corpus (data/raw/corpus.jsonl: never the test set). With 1.75 and 16, every reference of the six default
FLORES directions (6 x 1,012 devtest segments) fits its budget. A direction with a language the corpus
lacks gets the flat `max_new_tokens`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bayling.config.evaluate import BudgetParams, EvaluateParams
from bayling.evaluate.test_sets import TestItem

PIVOT = "eng_Latn"


def language_rates(corpus: Path, tokenizer: Any, languages: Iterable[str], max_rows: int = 2000) -> dict[str, float]:
    """Tokens per segment of each language against English's, over the first `max_rows` corpus rows that hold both
    (English: 1.0). A language with no such row has no rate."""
    wanted = sorted(set(languages) - {PIVOT})
    pairs: dict[str, tuple[list[str], list[str]]] = {lang: ([], []) for lang in wanted}
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            texts = json.loads(line).get("texts") or {}
            if PIVOT not in texts:
                continue
            for lang in wanted:
                if lang in texts and len(pairs[lang][0]) < max_rows:
                    pairs[lang][0].append(texts[PIVOT])
                    pairs[lang][1].append(texts[lang])
            if all(len(english) >= max_rows for english, _ in pairs.values()):
                break

    def tokens(texts: list[str]) -> int:
        return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])

    rates = {PIVOT: 1.0}
    for lang, (english, other) in pairs.items():
        if english:
            rates[lang] = tokens(other) / max(1, tokens(english))
    return rates


def token_budgets(items: Sequence[TestItem], tokenizer: Any, rates: dict[str, float], rule: BudgetParams, cap: int) -> list[int]:
    """Each item's token budget (see the module docstring), never above `cap`."""
    sources = [len(ids) for ids in tokenizer([item.source for item in items], add_special_tokens=False)["input_ids"]] if items else []
    budgets = []
    for item, tokens in zip(items, sources):
        if item.src_lang in rates and item.tgt_lang in rates:
            expected = tokens * rates[item.tgt_lang] / rates[item.src_lang]
            budgets.append(min(cap, math.ceil(rule.per_source_token * expected) + rule.extra))
        else:
            budgets.append(cap)
    return budgets


def budgets_for(params: EvaluateParams, items: Sequence[TestItem], tokenizer: Any, resolve: Callable[[str], Path]
                ) -> list[int] | None:
    """evaluate.budget applied to `items` (None when it is off: every row gets max_new_tokens)."""
    if params.budget is None:
        return None
    corpus = resolve(params.budget.corpus)
    if not corpus.is_file():
        from bayling.core.errors import PipelineError

        raise PipelineError(f"evaluate.budget.corpus: {params.budget.corpus} not found (the token rates per language come "
                            "from it); run `python -m stages.fetch`, or set evaluate.budget: null")
    rates = language_rates(corpus, tokenizer, {lang for item in items for lang in (item.src_lang, item.tgt_lang)})
    return token_budgets(items, tokenizer, rates, params.budget, params.max_new_tokens)
