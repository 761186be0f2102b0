"""The tokenize stage's engine: conversations in, column chunks out, streamed chunk by chunk.

Each chunk is rendered (compiled template, Jinja-verified), tokenized in one Rust batch call, cut to
`max_seq_len` at turn boundaries or dropped, labelled (all assistant turns or the last), and, when
packing is on, packed best-fit-decreasing into rows of `max_seq_len` tokens. Every row also carries the
category (bayling.core.composition) and supervised-token count of each conversation in it, so the train
stage can count what its steps drew; the stats count the same per category, as synthesized and as kept. Chunks can run on
several processes; chunks come back in order as flat column arrays (cheap to pass between
processes and to turn into Arrow record batches), so the output doesn't depend on the process count.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayling.core.composition import Ratios, Tally, category_of
from bayling.core.records import IGNORE_INDEX
from bayling.tokenize.chat import Renderer, fit, labels_for, strip_replies, tokenize_batch
from bayling.tokenize.packing import best_fit_decreasing, pack_rows


@dataclass
class TokenizeStats:
    conversations_in: int = 0
    conversations_kept: int = 0
    truncated: int = 0
    dropped: int = 0
    rows: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    row_slots: int = 0  # rows x max_seq_len when packed: the denominator of the fill rate
    max_len: int = 0
    render_fallbacks: int = 0
    replies_stripped: int = 0  # replies whose leading whitespace was removed (chat.strip_replies)
    synthesized: Tally = field(default_factory=Tally)  # every conversation read, its supervised tokens if kept whole
    kept: Tally = field(default_factory=Tally)  # the conversations written, as written (cut ones counted cut)

    def add(self, other: TokenizeStats) -> None:
        for name, value in vars(other).items():
            if isinstance(value, Tally):
                getattr(self, name).update(value)
            else:
                setattr(self, name, max(self.max_len, value) if name == "max_len" else getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        out = {name: value for name, value in vars(self).items() if not isinstance(value, Tally)}
        out["fill_rate"] = round(self.tokens / self.row_slots, 4) if self.row_slots else None
        return out

    def composition(self) -> dict[str, Any]:
        return {"synthesized": self.synthesized.as_json(), "kept": self.kept.as_json()}


@dataclass(frozen=True)
class ChunkSettings:
    max_seq_len: int
    overlong: str
    loss_on: str
    packing: bool


@dataclass
class _Worker:
    tokenizer: Any = None
    renderer: Renderer | None = None
    settings: ChunkSettings | None = None
    extra: dict = field(default_factory=dict)


_WORKER = _Worker()


def _init_worker(tokenizer: Any, renderer: Renderer, settings: ChunkSettings) -> None:
    # Inside a pool every process already is one of the parallel workers: keep the Rust side single-threaded.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER.tokenizer, _WORKER.renderer, _WORKER.settings = tokenizer, renderer, settings


@dataclass
class ColumnChunk:
    """One chunk's rows as flat columns: each column's values concatenated, plus shared row offsets; the
    per-conversation columns have offsets of their own (a packed row holds several conversations)."""

    offsets: np.ndarray  # int64, len(rows) + 1
    columns: dict[str, np.ndarray]
    segment_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    segment_columns: dict[str, Any] = field(default_factory=dict)

    def record_batch(self) -> Any:
        import pyarrow as pa

        def lists(offsets_values: np.ndarray, values: dict[str, Any]) -> dict[str, Any]:
            offsets = pa.array(offsets_values.astype(np.int32) if offsets_values[-1] < 2**31 else offsets_values)
            make = pa.ListArray if offsets.type == pa.int32() else pa.LargeListArray
            return {name: make.from_arrays(offsets, pa.array(column)) for name, column in values.items()}

        return pa.RecordBatch.from_pydict({**lists(self.offsets, self.columns), **lists(self.segment_offsets, self.segment_columns)})


def _offsets(lengths: list[int]) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=offsets[1:])
    return offsets


def _columns(rows: list[dict[str, Any]], names: tuple[str, ...]) -> ColumnChunk:
    empty = {"attention_mask": np.int8}
    columns = {
        name: (np.concatenate([r[name] for r in rows]) if rows else np.zeros(0, dtype=empty.get(name, np.int32)))
        for name in names
    }
    segments = {"mix_category": np.array([c for r in rows for c in r["mix_category"]], dtype=object),
                "mix_supervised": np.array([n for r in rows for n in r["mix_supervised"]], dtype=np.int32)}
    return ColumnChunk(_offsets([len(r["input_ids"]) for r in rows]), columns, _offsets([len(r["mix_category"]) for r in rows]),
                       segments)


def process_chunk(conversations: list[tuple[list[dict[str, str]], str]]) -> tuple[ColumnChunk, TokenizeStats]:
    """One chunk of (conversation, category) as column arrays (packed rows, or one row per conversation) and its
    counts."""
    tokenizer, renderer, settings = _WORKER.tokenizer, _WORKER.renderer, _WORKER.settings
    stats = TokenizeStats(conversations_in=len(conversations))
    slow_before = renderer.slow_batches
    stripped = [strip_replies(messages) for messages, _ in conversations]
    stats.replies_stripped = sum(n for _, n in stripped)
    items, categories, supervised = [], [], []
    for item, (_, category) in zip(tokenize_batch(tokenizer, renderer, [messages for messages, _ in stripped]), conversations):
        stats.synthesized.add(category, 1, int((labels_for(item, settings.loss_on) != IGNORE_INDEX).sum()))
        kept, status = fit(item, settings.max_seq_len, settings.overlong)
        if kept is None:
            stats.dropped += 1
            continue
        stats.truncated += status == "truncated"
        labels = labels_for(kept, settings.loss_on)
        count = int((labels != IGNORE_INDEX).sum())
        if not count:
            stats.dropped += 1
            continue
        stats.kept.add(category, 1, count)
        items.append((kept.input_ids, labels))
        categories.append(category)
        supervised.append(count)
    stats.render_fallbacks = renderer.slow_batches - slow_before
    stats.conversations_kept = len(items)
    names: tuple[str, ...] = ("input_ids", "labels")
    if settings.packing:
        bins = best_fit_decreasing([len(ids) for ids, _ in items], settings.max_seq_len)
        rows = [{"input_ids": p.input_ids, "labels": p.labels, "position_ids": p.position_ids,
                 "mix_category": [categories[i] for i in members], "mix_supervised": [supervised[i] for i in members]}
                for p, members in zip(pack_rows(items, bins), bins)]
        names += ("position_ids",)
        stats.row_slots = len(rows) * settings.max_seq_len
    else:
        rows = [{"input_ids": ids, "labels": labels, "mix_category": [category], "mix_supervised": [count]}
                for (ids, labels), category, count in zip(items, categories, supervised)]
    chunk = _columns(rows, names)
    chunk.columns["attention_mask"] = np.ones(len(chunk.columns["input_ids"]), dtype=np.int8)
    stats.rows = len(rows)
    stats.tokens = int(chunk.offsets[-1])
    stats.supervised_tokens = int((chunk.columns["labels"] != IGNORE_INDEX).sum())
    stats.max_len = int(np.diff(chunk.offsets).max()) if rows else 0
    return chunk, stats


UNKNOWN_META = {"family": "unknown", "group": "unknown", "tgt_lang": "unknown"}


def iter_chunks(path: Path, size: int, ratios: Ratios | None = None) -> Iterator[list[tuple[list[dict[str, str]], str]]]:
    """(messages, category) of each conversation, `size` at a time; a row without synthesize's meta is 'unknown'."""
    chunk: list[tuple[list[dict[str, str]], str]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            meta = row.get("meta") or {}
            chunk.append((row["messages"], category_of({**UNKNOWN_META, **meta}, ratios or {})))
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def chunk_count(path: Path, size: int) -> int:
    """How many chunks iter_chunks will make of a JSONL file (one conversation a line), for the progress bar."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            lines, last = lines + block.count(b"\n"), block[-1:]
    return -(-(lines + (last != b"\n")) // size)


def iter_chunk_columns(
    path: Path, tokenizer: Any, renderer: Renderer, settings: ChunkSettings, chunk_size: int, num_proc: int, stats: TokenizeStats,
    ratios: Ratios | None = None,
) -> Iterator[ColumnChunk]:
    """Every chunk of a conversations file as columns, in order; `stats` accumulates as chunks complete. `ratios`
    (synthesize.mix.ratios) name the mix cell each conversation counts towards."""
    if num_proc <= 1:
        _init_worker(tokenizer, renderer, settings)
        os.environ.pop("TOKENIZERS_PARALLELISM", None)
        results: Iterator[tuple[ColumnChunk, TokenizeStats]] = map(process_chunk, iter_chunks(path, chunk_size, ratios))
        for chunk, chunk_stats in results:
            stats.add(chunk_stats)
            yield chunk
        return
    import multiprocessing
    from collections import deque

    context = multiprocessing.get_context("fork")
    with context.Pool(num_proc, initializer=_init_worker, initargs=(tokenizer, renderer, settings)) as pool:
        # A bounded window of chunks in flight (Pool.imap would read the whole file ahead into its queue).
        pending: deque = deque()
        for conversations in iter_chunks(path, chunk_size, ratios):
            pending.append(pool.apply_async(process_chunk, (conversations,)))
            if len(pending) > num_proc:
                chunk, chunk_stats = pending.popleft().get()
                stats.add(chunk_stats)
                yield chunk
        while pending:
            chunk, chunk_stats = pending.popleft().get()
            stats.add(chunk_stats)
            yield chunk
