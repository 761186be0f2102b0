"""The records that pass between stages: a corpus row (fetch writes them, synthesize reads them), a
conversation (synthesize writes them, tokenize and evaluate read them) and the label value that marks a
token as not supervised (tokenize writes it, train reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IGNORE_INDEX = -100  # the label of a token that carries no loss (PyTorch's cross-entropy default)
Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class CorpusRow:
    """One row of data/raw/corpus.jsonl: the same sentence in several languages ({FLORES-200 code: text}).

    `file` and `line` say where fetch read it, for its quarantine; they are not written to the corpus, so a
    row read back from it has them empty.
    """

    id: str
    source: str
    texts: dict[str, str]
    file: str = ""
    line: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "texts": self.texts}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> CorpusRow:
        return cls(id=row["id"], source=row.get("source", ""), texts=row["texts"])


@dataclass
class Conversation:
    """One chat of data/synth/{train,heldout}.jsonl: the messages and where they came from.

    `family` is the mix's task family (translation, interactive, general); `group` is BayLing 2's
    language group (zh, en, cross, other); `turn_tasks` names the task of every user turn.
    """

    id: str
    messages: list[Message]
    task: str
    family: str
    group: str
    instruction_language: str
    src_lang: str
    tgt_lang: str
    turn_tasks: list[str] = field(default_factory=list)
    source_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "messages": self.messages,
            "meta": {
                "task": self.task,
                "family": self.family,
                "group": self.group,
                "instruction_language": self.instruction_language,
                "turn_tasks": self.turn_tasks,
                "src_lang": self.src_lang,
                "tgt_lang": self.tgt_lang,
                "source_ids": self.source_ids,
            },
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Conversation:
        meta = row["meta"]
        return cls(
            id=row["id"], messages=row["messages"], task=meta["task"], family=meta.get("family", meta["task"]),
            group=meta.get("group", "cross"), instruction_language=meta.get("instruction_language", "en"),
            src_lang=meta["src_lang"], tgt_lang=meta["tgt_lang"], turn_tasks=list(meta.get("turn_tasks") or [meta["task"]]),
            source_ids=list(meta.get("source_ids") or []),
        )
