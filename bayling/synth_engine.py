"""The streaming synthesis engine: screen the corpus, split it without leaks, build conversations shard
by shard (optionally on Dask), ask the teacher where a task needs it, then apply the mix.

Memory stays bounded by the shard size: rows are read, screened and written as a stream; the split
keeps one small hash per segment; conversations are written per shard and merged in order.
Output depends only on the seed and the shard size, never on how many workers ran the shards.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayling import quality
from bayling.corpus import Problem, Quarantined
from bayling.decontam import Decontaminator
from bayling.synthesis import interactive_conversation, keep_draw, split_flags, translation_conversations


# ---------------------------------------------------------------- screening
@dataclass
class ScreenStats:
    rows_in: int = 0
    rows_kept: int = 0
    rows_quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    segments_removed: Counter = field(default_factory=Counter)
    decontaminated: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined,
            "row_reasons": dict(sorted(self.reasons.items())),
            "segments_removed": dict(sorted(self.segments_removed.items())),
            "decontaminated_rows_per_eval_set": dict(sorted(self.decontaminated.items())),
        }


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def screen_row(
    row: dict[str, Any], filters: Any, decontaminator: Decontaminator | None, seen: set[bytes]
) -> tuple[dict[str, Any] | None, list[Problem], str | None]:
    """Apply the quality filters and decontamination to one corpus row.

    Returns the (possibly reduced) row or None, the per-segment problems, and the row's rejection reason.
    A row touching an evaluation set is rejected first. Then a segment in the wrong script,
    misidentified, or far off the row's median length is removed; a row left with fewer than two
    segments, or a duplicate, is rejected.
    """
    problems: list[Problem] = []
    if decontaminator is not None:
        # First, on every segment as given: a contaminated row is reported as such, whatever else is wrong with it.
        for text in row["texts"].values():
            hit = decontaminator.match(text)
            if hit:
                return None, problems, f"overlaps evaluation set {hit[0]} ({hit[1]})"
    texts = dict(row["texts"])
    for code, text in list(texts.items()):
        if filters.min_script_share > 0:
            check = quality.check_script(text, code, filters.min_script_share)
            if not check.ok:
                problems.append(Problem(f"texts.{code}", f"wrong script: {check.share:.0%} {check.expected}, mostly {check.dominant}"))
                del texts[code]
                continue
        if filters.langid:
            lid = quality.check_langid(text, code, filters.langid_min_probability)
            if not lid.ok:
                problems.append(Problem(f"texts.{code}", f"language ID says {lid.predicted} ({lid.probability:.2f})"))
                del texts[code]
    if len(texts) == 2:
        (a, ta), (b, tb) = texts.items()
        ratio = quality.length_ratio(ta, tb)
        if ratio > filters.max_length_ratio:
            problems.append(Problem("texts", f"length ratio {ratio:.1f} between {a} and {b} exceeds {filters.max_length_ratio}"))
            texts.clear()
    elif len(texts) > 2:
        sizes = {code: len(text.encode("utf-8")) for code, text in texts.items()}
        median = _median(list(sizes.values()))
        for code, size in sizes.items():
            ratio = max(size, median) / max(1, min(size, median))
            if ratio > filters.max_length_ratio:
                problems.append(Problem(f"texts.{code}", f"length ratio {ratio:.1f} to the row's median exceeds {filters.max_length_ratio}"))
                del texts[code]
    if len(texts) < 2:
        return None, problems, "fewer than two usable segments"
    if filters.dedupe != "off":
        keyed = {c: (quality.normalized_key(t) if filters.dedupe == "normalized" else t) for c, t in texts.items()}
        key = quality.digest(json.dumps(keyed, sort_keys=True, ensure_ascii=False))
        if key in seen:
            return None, problems, f"duplicate ({filters.dedupe})"
        seen.add(key)
    return {**row, "texts": texts}, problems, None


def screen_corpus(
    rows: Iterator[dict[str, Any]], filters: Any, decontaminator: Decontaminator | None
) -> Iterator[tuple[dict[str, Any] | None, Quarantined | None, list[Quarantined]]]:
    """Stream (kept row or None, row quarantine record or None, segment quarantine records)."""
    seen: set[bytes] = set()
    for lineno, row in enumerate(rows, start=1):
        kept, problems, reason = screen_row(row, filters, decontaminator, seen)
        segment_records = [
            Quarantined(row.get("source", ""), f"corpus:{row['id']}", lineno, (p,), _segment_preview(row, p.field))
            for p in problems
        ]
        row_record = None
        if kept is None:
            row_record = Quarantined(row.get("source", ""), f"corpus:{row['id']}", lineno,
                                     (Problem(None, reason or "rejected"),),
                                     json.dumps(row["texts"], ensure_ascii=False)[:600])
        yield kept, row_record, segment_records


def _segment_preview(row: dict[str, Any], field: str | None) -> str:
    if field and field.startswith("texts."):
        return row["texts"].get(field.split(".", 1)[1], "")[:300]
    return json.dumps(row["texts"], ensure_ascii=False)[:600]


def screen_file(corpus: Path, kept_path: Path, quarantine: Any, filters: Any, decontaminator: Decontaminator | None) -> ScreenStats:
    """Screen the corpus file into `kept_path`, writing every rejection to `quarantine`; return the counts."""
    stats = ScreenStats()
    with open(corpus, encoding="utf-8") as rows, open(kept_path, "w", encoding="utf-8") as kept_rows:
        for kept, row_record, segment_records in screen_corpus(map(json.loads, rows), filters, decontaminator):
            stats.rows_in += 1
            for record in segment_records:
                stats.segments_removed[reason_label(record.problems[0].reason)] += 1
                quarantine.write(json.dumps({"kind": "segment", **record.to_json()}, ensure_ascii=False) + "\n")
            if kept is not None:
                stats.rows_kept += 1
                kept_rows.write(json.dumps(kept, ensure_ascii=False) + "\n")
                continue
            reason = row_record.problems[0].reason
            stats.rows_quarantined += 1
            stats.reasons[reason_label(reason)] += 1
            if reason.startswith("overlaps evaluation set"):
                stats.decontaminated[reason.split()[3]] += 1
            quarantine.write(json.dumps({"kind": "row", **row_record.to_json()}, ensure_ascii=False) + "\n")
    return stats


def split_file(rows_path: Path, heldout_fraction: float, seed: int) -> np.ndarray:
    with open(rows_path, encoding="utf-8") as handle:
        return split_flags(((r["id"], list(r["texts"].values())) for r in map(json.loads, handle)), heldout_fraction, seed)


def reason_label(reason: str) -> str:
    for prefix in ("overlaps evaluation set", "duplicate", "fewer than two", "wrong script", "length ratio", "language ID"):
        if reason.startswith(prefix):
            return prefix
    return reason


# ---------------------------------------------------------------- shards
@dataclass
class BlockResult:
    train: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    skipped: Counter
    teacher: dict[str, int]
    teacher_rejected: Counter
    instruction_fallbacks: int


def _verify_teacher_reply(text: str | None, checks: dict[str, Any]) -> str | None:
    """Why a teacher reply is unusable, or None if it passes the turn's checks."""
    from bayling.tasks import length_in_units

    if text is None or not text.strip():
        return "no reply"
    if "script" in checks and not quality.check_script(text, checks["script"]).ok:
        return "reply in the wrong script"
    if "max_units" in checks and length_in_units(text, checks.get("script", "eng_Latn")) > checks["max_units"]:
        return "reply over the length limit"
    return None


def synthesize_block(
    block: Sequence[dict[str, Any]], heldout: Sequence[bool], params: Any, root: str
) -> BlockResult:
    """All conversations of one shard of screened rows. Neighbours for list tasks come from the same
    shard and the same side of the split, so no held-out sentence reaches a training chat."""
    allowed = None if params.directions == "all" else params.directions
    by_split: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for row, is_heldout in zip(block, heldout):
        by_split[bool(is_heldout)].append(row)
    out: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    skipped: Counter = Counter()
    fallbacks = 0
    pending: list[tuple[dict[str, Any], Any]] = []
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
    teacher_stats: dict[str, int] = {}
    rejected: Counter = Counter()
    if pending:
        from bayling import teacher

        settings = teacher.settings_from(params.teacher)
        cache = teacher.ResponseCache(Path(root) / params.teacher.cache_path)
        stats = teacher.TeacherStats()
        try:
            replies = teacher.complete(settings, [turn.teacher_messages for _, turn in pending], cache, stats)
        finally:
            cache.close()
        teacher_stats = {k: v for k, v in stats.as_dict().items() if isinstance(v, int)}
        for (conversation, turn), reply in zip(pending, replies):
            problem = _verify_teacher_reply(reply, dict(turn.checks))
            if problem:
                rejected[f"{turn.task}: {problem}"] += 1
                # Drop the unanswerable last turn; the conversation keeps its derived turns.
                conversation["messages"].pop()
                conversation["meta"]["turn_tasks"].pop()
            else:
                conversation["messages"].append({"role": "assistant", "content": reply.strip()})
    return BlockResult(out[False], out[True], skipped, teacher_stats, rejected, fallbacks)


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


def iter_blocks(path: Path, shard_size: int) -> Iterator[list[dict[str, Any]]]:
    block: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            block.append(json.loads(line))
            if len(block) == shard_size:
                yield block
                block = []
    if block:
        yield block


def write_jsonl(path: Path, conversations: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for conversation in conversations:
            handle.write(json.dumps(conversation, ensure_ascii=False) + "\n")


def mix_counts(paths: Sequence[Path]) -> Counter:
    counts: Counter = Counter()
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                meta = json.loads(line)["meta"]
                counts[(meta["family"], meta["group"])] += 1
    return counts


def merge_shards(paths: Sequence[Path], out: Any, keep: dict[tuple[str, str], float] | None, seed: int) -> Counter:
    """Concatenate shard files in order into `out`, keeping each chat by its deterministic mix draw."""
    kept: Counter = Counter()
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                conversation = json.loads(line)
                meta = conversation["meta"]
                cell = (meta["family"], meta["group"])
                if keep is not None and not keep_draw(seed, conversation["id"], keep.get(cell, 0.0)):
                    continue
                out.write(line)
                kept[cell] += 1
    return kept


# ---------------------------------------------------------------- general instruction data
@dataclass
class GeneralResult:
    train: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    quarantined: list[Quarantined]
    stats: Counter
    teacher: dict[str, int]


def _heldout_by_hash(seed: int, key: str, fraction: float) -> bool:
    import hashlib

    value = int.from_bytes(hashlib.sha256(f"{seed}\x00general\x00{key}".encode()).digest()[:8], "big")
    return value / 2**64 < fraction


def build_general(params: Any, root: Path, decontaminator: Decontaminator | None) -> GeneralResult:
    """Monolingual chats, cross-lingual chats from aligned versions, and teacher-carried ones."""
    from bayling import general
    from bayling.corpus import iter_lines
    from bayling.synthesis import row_rng

    result = GeneralResult([], [], [], Counter(), {})
    by_id: dict[str, dict[str, dict[str, Any]]] = {}
    seen: set[bytes] = set()
    for source in params.general.sources:
        path = root / source.path
        for record in general.read_general(source.path, source.name, iter_lines(path)):
            result.stats["chats_in"] += 1
            if isinstance(record, Quarantined):
                result.quarantined.append(record)
                result.stats["quarantined: malformed"] += 1
                continue
            texts = [m["content"] for m in record["messages"]]
            hit = next((h for h in (decontaminator.match(t) for t in texts) if h), None) if decontaminator else None
            if hit:
                result.stats[f"decontaminated: {hit[0]}"] += 1
                result.quarantined.append(Quarantined(source.name, source.path, 0, (Problem(None, f"overlaps evaluation set {hit[0]} ({hit[1]})"),), texts[0][:300]))
                continue
            key = quality.digest(source.language + "\x00" + "\x00".join(quality.normalized_key(t) for t in texts))
            if params.filters.dedupe != "off" and key in seen:
                result.stats["quarantined: duplicate"] += 1
                result.quarantined.append(Quarantined(source.name, source.path, 0, (Problem(None, "duplicate chat"),), texts[0][:300]))
                continue
            seen.add(key)
            result.stats["chats_kept"] += 1
            chat = {**record, "language": source.language, "source": source.name}
            by_id.setdefault(record["id"], {})[source.language] = chat
            split = result.heldout if _heldout_by_hash(params.seed, record["id"], params.heldout_fraction) else result.train
            split.append(general.monolingual(record, source.name, source.language))
    for chat_id, versions in sorted(by_id.items()):
        split = result.heldout if _heldout_by_hash(params.seed, chat_id, params.heldout_fraction) else result.train
        for a in sorted(versions):
            for b in sorted(versions):
                if a == b:
                    continue
                rng = row_rng(params.seed, chat_id, f"aligned:{a}-{b}")
                built = general.cross_from_aligned(versions[a], versions[b], source=versions[a]["source"],
                                                   prompt_language=a, answer_language=b, rng=rng)
                if isinstance(built, str):
                    result.stats[f"aligned skipped: {built}"] += 1
                else:
                    split.append(built)
                    result.stats["aligned cross-lingual chats"] += 1
    targets = list(params.general.cross_lingual_targets)
    if targets and params.teacher.enabled:
        jobs = []
        for chat_id, versions in sorted(by_id.items()):
            for a, chat in sorted(versions.items()):
                for b in targets:
                    if b != a and b not in versions:
                        jobs.append((chat_id, a, b, chat, general.teacher_translation_requests(chat, b)))
        from bayling import teacher

        cache = teacher.ResponseCache(root / params.teacher.cache_path)
        stats = teacher.TeacherStats()
        try:
            flat = [request for job in jobs for request in job[4]]
            replies = teacher.complete(teacher.settings_from(params.teacher), flat, cache, stats)
        finally:
            cache.close()
        result.teacher = {k: v for k, v in stats.as_dict().items() if isinstance(v, int)}
        position = 0
        for chat_id, a, b, chat, requests in jobs:
            answers = replies[position : position + len(requests)]
            position += len(requests)
            bad = next((problem for problem in (_verify_teacher_reply(r, {"script": b}) for r in answers) if problem), None)
            if bad:
                result.stats[f"teacher cross-lingual rejected: {bad}"] += 1
                continue
            rng = row_rng(params.seed, chat_id, f"teacher:{a}-{b}")
            built = general.cross_from_teacher(chat, [r.strip() for r in answers], source=chat["source"],
                                               prompt_language=a, answer_language=b, rng=rng)
            if isinstance(built, str):
                result.stats[f"teacher cross-lingual skipped: {built}"] += 1
                continue
            split = result.heldout if _heldout_by_hash(params.seed, chat_id, params.heldout_fraction) else result.train
            split.append(built)
            result.stats["teacher cross-lingual chats"] += 1
    return result
