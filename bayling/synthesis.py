"""Instruction synthesis from the parallel corpus: BayLing's translation instructions and a leak-free split."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from itertools import permutations
from typing import Any, Literal

from bayling.languages import get_language

Split = Literal["train", "heldout"]

# BayLing's own wording (ictnlp/BayLing scripts/translate.py), in English and Chinese.
TRANSLATION_PROMPTS = {
    "en": "Provide the {tgt_lang} translation for this sentence: {src}",
    "zh": "提供这句话的{tgt_lang}翻译：{src}",
}

# Names used inside Chinese instructions; languages not listed fall back to their native or English name.
ZH_LANGUAGE_NAMES = {
    "eng_Latn": "英文", "zho_Hans": "中文", "zho_Hant": "繁体中文", "yue_Hant": "粤语", "jpn_Jpan": "日文",
    "kor_Hang": "韩文", "fra_Latn": "法文", "deu_Latn": "德文", "spa_Latn": "西班牙文", "por_Latn": "葡萄牙文",
    "ita_Latn": "意大利文", "rus_Cyrl": "俄文", "arb_Arab": "阿拉伯文", "hin_Deva": "印地文", "vie_Latn": "越南文",
    "tha_Thai": "泰文", "ind_Latn": "印尼文", "tur_Latn": "土耳其文", "swh_Latn": "斯瓦希里文", "nld_Latn": "荷兰文",
    "pol_Latn": "波兰文", "ukr_Cyrl": "乌克兰文", "ces_Latn": "捷克文", "isl_Latn": "冰岛文", "hau_Latn": "豪萨文",
    "zul_Latn": "祖鲁文", "amh_Ethi": "阿姆哈拉文", "khm_Khmr": "高棉文", "npi_Deva": "尼泊尔文",
}


def language_name(code: str, instruction_language: str = "en") -> str:
    """How an instruction written in `instruction_language` names the language `code`."""
    lang = get_language(code)
    if instruction_language == "zh":
        return ZH_LANGUAGE_NAMES.get(code) or lang.native_name or lang.name
    return lang.name


def translation_prompt(src_text: str, tgt_lang: str, instruction_language: str = "en") -> str:
    template = TRANSLATION_PROMPTS[instruction_language]
    return template.format(tgt_lang=language_name(tgt_lang, instruction_language), src=src_text)


def directions_for(languages: Iterable[str], allowed: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Every ordered pair of the row's languages, optionally restricted to `allowed` 'src-tgt' strings."""
    pairs = list(permutations(sorted(languages), 2))
    if allowed is None:
        return pairs
    wanted = set(allowed)
    return [(s, t) for s, t in pairs if f"{s}-{t}" in wanted]


def translation_conversations(
    row: dict[str, Any],
    *,
    instruction_language: str = "en",
    system_prompt: str | None = None,
    allowed_directions: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Single-turn translation instructions in both directions for every language pair of a corpus row."""
    texts: dict[str, str] = row["texts"]
    out = []
    for src, tgt in directions_for(texts, allowed_directions):
        messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
        messages += [
            {"role": "user", "content": translation_prompt(texts[src], tgt, instruction_language)},
            {"role": "assistant", "content": texts[tgt]},
        ]
        out.append(
            {
                "id": f"{row['id']}/{src}-{tgt}",
                "messages": messages,
                "meta": {"task": "translate", "src_lang": src, "tgt_lang": tgt, "source_ids": [row["id"]]},
            }
        )
    return out


def _segment_key(text: str) -> str:
    return " ".join(text.casefold().split())


def split_rows(rows: list[dict[str, Any]], heldout_fraction: float, seed: int) -> dict[str, Split]:
    """Assign each row to train or heldout so that no segment text appears on both sides.

    Rows that share any segment (in any language) are joined into one group; whole groups are
    drawn into heldout in a seeded hash order until the fraction of rows is reached.
    """
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_row_with: dict[str, int] = {}
    for i, row in enumerate(rows):
        for text in row["texts"].values():
            j = first_row_with.setdefault(_segment_key(text), i)
            if j != i:
                parent[find(i)] = find(j)

    groups: dict[int, list[int]] = {}
    for i in range(len(rows)):
        groups.setdefault(find(i), []).append(i)

    def order(members: list[int]) -> str:
        anchor = min(rows[i]["id"] for i in members)
        return hashlib.sha256(f"{seed}\x00{anchor}".encode()).hexdigest()

    target = round(heldout_fraction * len(rows))
    if len(groups) > 1:
        target = max(target, 1)
    assignment: dict[str, Split] = {}
    taken = 0
    for members in sorted(groups.values(), key=order):
        split: Split = "heldout" if taken < target and len(groups) > 1 else "train"
        if split == "heldout":
            taken += len(members)
        for i in members:
            assignment[rows[i]["id"]] = split
    return assignment


def build_card(splits: dict[str, list[dict[str, Any]]], params: dict[str, Any]) -> dict[str, Any]:
    """Counts per split, per task and per language pair, plus the settings that produced them."""
    card: dict[str, Any] = {"params": params, "splits": {}}
    for name, conversations in splits.items():
        tasks = Counter(c["meta"]["task"] for c in conversations)
        pairs = Counter(f"{c['meta']['src_lang']}-{c['meta']['tgt_lang']}" for c in conversations)
        sources = {sid for c in conversations for sid in c["meta"]["source_ids"]}
        card["splits"][name] = {
            "conversations": len(conversations),
            "source_rows": len(sources),
            "per_task": dict(sorted(tasks.items())),
            "per_language_pair": dict(sorted(pairs.items())),
        }
    return card
