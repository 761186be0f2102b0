import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bayling.tokenize.chat import IGNORE_INDEX, Renderer
from bayling.tokenize.chunks import ChunkSettings, TokenizeStats, iter_chunk_columns
from bayling.tokenize.shards import parse_size, write_split
from bayling.tokenize.templates import compile_template


def conversations(n):
    return [
        [{"role": "user", "content": f"Provide the French translation for this sentence: item {i} " + "more words " * (i % 7)},
         {"role": "assistant", "content": "Réponse " * (1 + i % 5)},
         {"role": "user", "content": "Shorter please."},
         {"role": "assistant", "content": "Réponse."}]
        for i in range(n)
    ]


@pytest.fixture
def synth_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations(300)))
    return path


def run(tokenizer, path, tmp_path, name, *, packing, num_proc=1, max_len=256, shard_bytes=10**9, overlong="truncate", ratios=None):
    from datasets import load_from_disk

    renderer = Renderer(tokenizer, "<|im_end|>", compile_template(tokenizer, "<|im_end|>"))
    stats = TokenizeStats()
    chunks = iter_chunk_columns(path, tokenizer, renderer, ChunkSettings(max_len, overlong, "all", packing), 64, num_proc, stats,
                                ratios)
    rows = write_split(chunks, tmp_path / name, shard_bytes, "f" * 64)
    return load_from_disk(str(tmp_path / name)), stats, rows


def test_unpacked_rows_one_per_conversation(tokenizer, synth_file, tmp_path):
    data, stats, rows = run(tokenizer, synth_file, tmp_path, "plain", packing=False)
    assert rows == data.num_rows == stats.rows == 300 and stats.dropped == 0
    assert set(data.column_names) == {"input_ids", "labels", "attention_mask", "mix_category", "mix_supervised"}
    first = data[0]
    assert len(first["input_ids"]) == len(first["labels"]) == len(first["attention_mask"])
    assert stats.tokens == sum(len(x) for x in data["input_ids"])
    assert stats.supervised_tokens == sum(sum(1 for t in x if t != IGNORE_INDEX) for x in data["labels"])


def test_packed_rows_fill_and_restart_positions(tokenizer, synth_file, tmp_path):
    data, stats, _ = run(tokenizer, synth_file, tmp_path, "packed", packing=True, max_len=512)
    assert "position_ids" in data.column_names and stats.conversations_kept == 300
    assert max(len(x) for x in data["input_ids"]) <= 512
    starts = sum(p.count(0) for p in data["position_ids"])
    assert starts == 300  # every conversation starts its own positions at 0
    assert stats.as_dict()["fill_rate"] > 0.85  # small chunks of short chats; the benchmark checks 0.98 at 2048


def test_shards_and_processes_do_not_change_the_rows(tokenizer, synth_file, tmp_path):
    one, _, _ = run(tokenizer, synth_file, tmp_path, "one", packing=True)
    sharded, _, _ = run(tokenizer, synth_file, tmp_path, "two", packing=True, num_proc=2, shard_bytes=20_000)
    assert len(list((tmp_path / "two").glob("data-*.arrow"))) > 1
    assert one["input_ids"] == sharded["input_ids"] and one["labels"] == sharded["labels"]


def test_overlong_conversations_are_truncated_or_dropped_and_counted(tokenizer, synth_file, tmp_path):
    data, stats, _ = run(tokenizer, synth_file, tmp_path, "cut", packing=False, max_len=75)
    assert stats.truncated > 0 and stats.conversations_in == stats.conversations_kept + stats.dropped
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for labels, ids in zip(data["labels"], data["input_ids"]):
        assert len(ids) <= 75
        last_supervised = max(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
        assert ids[last_supervised] == end  # no reply is cut open: the last supervised token ends a turn
    _, dropped, _ = run(tokenizer, synth_file, tmp_path, "drop", packing=False, max_len=75, overlong="drop")
    assert dropped.truncated == 0 and dropped.dropped >= stats.truncated


@pytest.mark.parametrize("packing", [False, True])
def test_every_row_says_what_it_holds_and_the_tallies_add_up(tokenizer, tmp_path, packing):
    """Each row lists the category and supervised tokens of every conversation in it; summed, they are the row's
    supervised labels. As synthesized counts every conversation read; as kept, what the rows hold."""
    metas = [{"family": "translation", "group": "cross", "tgt_lang": "fra_Latn"},
             {"family": "general", "group": "zh", "tgt_lang": "zho_Hans"},
             {"family": "general", "group": "other", "tgt_lang": "deu_Latn"}]
    path = tmp_path / "train.jsonl"
    chats = conversations(120)
    path.write_text("".join(json.dumps({"messages": c, "meta": metas[i % 3]}) + "\n" for i, c in enumerate(chats)))
    ratios = {"any": {"zh": 0.4, "cross": 0.6}}
    data, stats, _ = run(tokenizer, path, tmp_path, f"mix-{packing}", packing=packing, max_len=75, ratios=ratios)
    assert stats.dropped > 0  # some conversations are too long for 75 tokens: the tallies must still add up
    for row in data:
        assert sum(row["mix_supervised"]) == sum(1 for t in row["labels"] if t != IGNORE_INDEX)
        assert len(row["mix_category"]) == (row["position_ids"].count(0) if packing else 1)
    kept = Counter(c for row in data for c in row["mix_category"])
    assert kept == stats.kept.conversations and sum(kept.values()) == stats.conversations_kept
    assert sum(stats.kept.supervised_tokens.values()) == stats.supervised_tokens
    assert stats.synthesized.conversations == Counter({"any.cross|translation|fra_Latn": 40, "any.zh|general|zho_Hans": 40,
                                                       "general.other (not requested)|general|deu_Latn": 40})
    dropped = {c: stats.synthesized.conversations[c] - stats.kept.conversations[c] for c in stats.synthesized.conversations}
    assert sum(dropped.values()) == stats.dropped
    # a conversation kept whole counts the same supervised tokens in both tallies; a cut one counts fewer when kept
    for category in stats.kept.supervised_tokens:
        assert stats.kept.supervised_tokens[category] <= stats.synthesized.supervised_tokens[category]


def test_parse_size():
    assert parse_size("500MB") == 500_000_000 and parse_size("1GiB") == 2**30 and parse_size("123") == 123
    assert np.isclose(parse_size("0.5GB"), 5e8)
