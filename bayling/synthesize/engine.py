"""The streaming synthesis engine: conversations built shard by shard from screened, split rows
(optionally on Dask), the teacher asked where a task needs it, shards written and later merged in order.

Memory stays bounded by the shard size: rows are read as a stream and conversations are written per
shard. Output depends only on the seed and the shard size, never on how many workers ran the shards.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bayling.config.synthesize import SynthesizeParams
from bayling.core.jsonl import write_jsonl
from bayling.core.progress import track
from bayling.core.records import Conversation, CorpusRow
from bayling.synthesize.followups import Turn
from bayling.synthesize.interactive import interactive_conversation
from bayling.synthesize.teacher import ask_teacher, verify_reply
from bayling.synthesize.translation import translation_conversations


@dataclass
class BlockResult:
    train: list[Conversation]
    heldout: list[Conversation]
    skipped: Counter
    teacher: dict[str, int]
    teacher_rejected: Counter
    instruction_fallbacks: int


def synthesize_block(block: Sequence[CorpusRow], heldout: Sequence[bool], params: SynthesizeParams, root: str) -> BlockResult:
    """All conversations of one shard of screened rows. Neighbours for list tasks come from the same
    shard and the same side of the split, so no held-out sentence reaches a training chat."""
    allowed = params.allowed_directions()
    by_split: dict[bool, list[CorpusRow]] = {True: [], False: []}
    for row, is_heldout in zip(block, heldout):
        by_split[bool(is_heldout)].append(row)
    out: dict[bool, list[Conversation]] = {True: [], False: []}
    skipped: Counter = Counter()
    fallbacks = 0
    pending: list[tuple[Conversation, Turn]] = []
    for is_heldout, rows in by_split.items():
        for row in rows:
            out[is_heldout].extend(translation_conversations(
                row, instruction_language=dict(params.instruction_languages), system_prompt=params.system_prompt,
                allowed_directions=allowed, seed=params.seed,
            ))
            for index in range(params.interactive.per_row):
                outcome = interactive_conversation(
                    row, seed=params.seed, index=index, instruction_languages=dict(params.instruction_languages),
                    task_weights=params.interactive.weights(), max_followups=params.interactive.max_followups,
                    neighbours=rows, allowed_directions=allowed, system_prompt=params.system_prompt,
                    teacher_enabled=params.teacher.enabled,
                )
                skipped.update(f"{task}: {reason}" for task, reason in outcome.skipped)
                fallbacks += outcome.fallback_instruction_language
                if outcome.conversation is None:
                    continue
                out[is_heldout].append(outcome.conversation)
                if outcome.teacher_turn is not None:
                    pending.append((outcome.conversation, outcome.teacher_turn))
    teacher_counts: dict[str, int] = {}
    rejected: Counter = Counter()
    if pending:
        replies, teacher_counts = ask_teacher(params.teacher, [turn.teacher_messages or () for _, turn in pending], Path(root))
        for (conversation, turn), reply in zip(pending, replies):
            problem = verify_reply(reply, turn.checks)
            if problem:
                rejected[f"{turn.task}: {problem}"] += 1
                # Drop the unanswerable last turn; the conversation keeps its derived turns.
                conversation.messages.pop()
                conversation.turn_tasks.pop()
            else:
                conversation.messages.append({"role": "assistant", "content": (reply or "").strip()})
    return BlockResult(out[False], out[True], skipped, teacher_counts, rejected, fallbacks)


@dataclass
class BlockSummary:
    """What remains of a shard once its conversations are on disk: the counts for the card."""

    skipped: Counter
    teacher: Counter
    teacher_rejected: Counter
    instruction_fallbacks: int

    @staticmethod
    def empty() -> BlockSummary:
        return BlockSummary(Counter(), Counter(), Counter(), 0)

    def add(self, other: BlockSummary) -> None:
        self.skipped.update(other.skipped)
        self.teacher.update(other.teacher)
        self.teacher_rejected.update(other.teacher_rejected)
        self.instruction_fallbacks += other.instruction_fallbacks


def write_block(work: Path, index: int, result: BlockResult) -> BlockSummary:
    """Write a shard's conversations as train-NNNNN.jsonl / heldout-NNNNN.jsonl and keep only its counts."""
    write_jsonl(work / f"train-{index:05d}.jsonl", result.train)
    write_jsonl(work / f"heldout-{index:05d}.jsonl", result.heldout)
    return BlockSummary(Counter(result.skipped), Counter(result.teacher), Counter(result.teacher_rejected), result.instruction_fallbacks)


def shard_paths(work: Path, split: str) -> list[Path]:
    return sorted(work.glob(f"{split}-[0-9]*.jsonl"))


def iter_blocks(path: Path, shard_size: int) -> Iterator[list[CorpusRow]]:
    block: list[CorpusRow] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            block.append(CorpusRow.from_json(json.loads(line)))
            if len(block) == shard_size:
                yield block
                block = []
    if block:
        yield block


def shard_count(rows: int, shard_size: int) -> int:
    return -(-rows // shard_size)


ShardExecutor = Callable[[Path, Sequence[bool], SynthesizeParams, Path], BlockSummary]


def run_blocks(work: Path, flags: Sequence[bool], params: SynthesizeParams, root: Path,
               executor: ShardExecutor | None = None) -> BlockSummary:
    """Synthesize every shard of work/rows.jsonl into `work`, in this process or with `executor` (the Dask one,
    bayling.synthesize.dask_executor.run_on_dask, which the caller passes in); the summed counts."""
    if executor is not None:
        return executor(work, flags, params, root)
    total = BlockSummary.empty()
    blocks = track(iter_blocks(work / "rows.jsonl", params.shard_size), shard_count(len(flags), params.shard_size), "synthesize", "shard")
    for i, block in enumerate(blocks):
        offset = i * params.shard_size
        result = synthesize_block(block, flags[offset : offset + len(block)], params, str(root))
        total.add(write_block(work, i, result))
    return total
