"""The data card: counts per split, task, family, language group, pair, instruction language and language,
the settings that made the data, and the mix, filter, decontamination and teacher reports; as JSON,
as markdown, and as a per-language chart for DVC plots."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.core.plots import grouped_barh
from bayling.core.records import Conversation


@dataclass
class SplitCounter:
    """Running counts for the data card, fed one conversation at a time."""

    conversations: int = 0
    turns: int = 0
    sources: set[tuple[str, str]] = field(default_factory=set)  # (corpus | general, source id)
    per_task: Counter = field(default_factory=Counter)
    per_family: Counter = field(default_factory=Counter)
    per_group: Counter = field(default_factory=Counter)
    per_pair: Counter = field(default_factory=Counter)
    per_instruction_language: Counter = field(default_factory=Counter)
    per_language: Counter = field(default_factory=Counter)

    def add(self, conversation: Conversation) -> None:
        self.conversations += 1
        self.turns += sum(1 for m in conversation.messages if m["role"] == "assistant")
        # corpus rows and general chats are named apart: a fetch source and a general source may share a name
        kind = "general" if conversation.family == "general" else "corpus"
        self.sources.update((kind, source_id) for source_id in conversation.source_ids)
        self.per_task.update(conversation.turn_tasks)
        self.per_family[conversation.family] += 1
        self.per_group[conversation.group] += 1
        self.per_pair[f"{conversation.src_lang}-{conversation.tgt_lang}"] += 1
        self.per_instruction_language[conversation.instruction_language] += 1
        self.per_language.update({conversation.src_lang, conversation.tgt_lang})

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "assistant_turns": self.turns,
            "source_rows": len(self.sources),
            "per_task": dict(sorted(self.per_task.items())),
            "per_family": dict(sorted(self.per_family.items())),
            "per_group": dict(sorted(self.per_group.items())),
            "per_language_pair": dict(sorted(self.per_pair.items())),
            "per_instruction_language": dict(sorted(self.per_instruction_language.items())),
            "per_language": dict(sorted(self.per_language.items())),
        }


def build_card(splits: dict[str, Iterable[Conversation]], params: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """Counts per split, task, family, language group, pair, instruction language and language,
    plus the settings that produced them and any extra report sections (mix, filters, ...)."""
    card: dict[str, Any] = {"params": params, "splits": {}}
    for name, conversations in splits.items():
        counter = SplitCounter()
        for conversation in conversations:
            counter.add(conversation)
        card["splits"][name] = counter.as_dict()
    card.update(sections)
    return card


def render_card_markdown(card: dict[str, Any]) -> str:
    """A human-readable data card: the same numbers as card.json, as tables."""

    def table(title: str, counts: dict[str, Any], header: str = "count") -> list[str]:
        if not counts:
            return []
        rows = [f"### {title}", "", f"| | {header} |", "|---|---:|"]
        rows += [f"| {key} | {value} |" for key, value in counts.items()]
        return rows + [""]

    lines = ["# Synthesized instruction data", ""]
    for split, info in card["splits"].items():
        lines += [f"## {split}: {info['conversations']} conversations, {info['assistant_turns']} assistant turns, "
                  f"{info['source_rows']} source rows", ""]
        lines += table("per task type (turns)", info["per_task"])
        lines += table("per family", info["per_family"])
        lines += table("per language group", info["per_group"])
        lines += table("per instruction language", info["per_instruction_language"])
        lines += table("per language pair", info["per_language_pair"])
    mix = card.get("mix")
    if mix:
        unit = str(mix.get("unit", "conversations")).replace("_", " ")
        lines += [f"## Mix (mode: {mix['mode']}; shares of {unit})", "",
                  "| cell | requested | achieved | available (conversations) | kept (with repeats) | distinct kept |",
                  "|---|---:|---:|---:|---:|---:|"]
        for cell in sorted(set(mix["requested"]) | set(mix["achieved"]) | set(mix["available"])):
            lines.append(f"| {cell} | {mix['requested'].get(cell, 0):.1%} | {mix['achieved'].get(cell, 0):.1%} | "
                         f"{mix['available'].get(cell, 0)} | {mix['kept'].get(cell, 0)} | {mix.get('kept_unique', {}).get(cell, '')} |")
        lines.append("")
        if mix.get("languages"):
            lines += [f"### Languages (temperature {mix['temperature']}, at most {mix['max_repeat']}x repeated)", "",
                      "| language (of the replies) | rows available | rows used | repetition factor |", "|---|---:|---:|---:|"]
            for lang, row in mix["languages"].items():
                lines.append(f"| {lang} | {row['available']} | {row['used']} | {row['repeat']:.2f} |")
            lines.append("")
    for section in ("filters", "decontamination", "interactive", "general", "teacher"):
        if card.get(section):
            lines += [f"## {section}", "", "```json", json.dumps(card[section], indent=2, ensure_ascii=False), "```", ""]
    return "\n".join(lines)


def language_chart(card: dict[str, Any], path: Path) -> None:
    """Horizontal bars: conversations involving each language, one bar per split."""
    per_split = {split: info["per_language"] for split, info in card["splits"].items()}
    languages = sorted({lang for counts in per_split.values() for lang in counts})
    series = {split: [counts.get(lang, 0) for lang in languages] for split, counts in per_split.items()}
    grouped_barh(languages, series, path, title="Conversations per language", xlabel="conversations",
                 size=(7, max(2.5, 0.45 * len(languages) + 1.2)))
