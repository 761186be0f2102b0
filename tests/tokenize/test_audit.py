"""The tokenizer audit on real FLORES text (the shipped sample) and real tokenizers: SmolLM2's byte-level
BPE and Phi-3's SentencePiece vocabulary with byte fallback."""

import json
from pathlib import Path

import pytest

from bayling.config.evaluate import EvalTestSet
from bayling.core.archives import unpacked
from bayling.tokenize.audit import (
    LanguageTally,
    TokenCounter,
    audit_tokenizer,
    evaluation_rows,
    summarize,
    tally_parallel,
    tally_truncation,
    write_audit,
)
from tests.conftest import load_offline_tokenizer

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = "data/sample/flores200/flores200-devtest.tar.gz"


@pytest.fixture(scope="module")
def flores_rows(tmp_path_factory):
    folder = unpacked(ROOT / ARCHIVE, tmp_path_factory.mktemp("unpacked")) / "devtest"
    codes = ["eng_Latn", "fra_Latn", "swh_Latn", "zho_Hans"]
    columns = {c: (folder / f"{c}.devtest").read_text("utf-8").splitlines()[:200] for c in codes}
    return [{c: columns[c][i] for c in codes} for i in range(200)]


def test_premium_is_tokens_per_english_token_on_the_same_segments():
    class Whitespace:  # one token per word: the premium is then a word ratio that can be counted by hand
        unk_token_id = None

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[1] * len(t.split()) for t in texts]}

        def decode(self, ids):
            return "x"

        def convert_ids_to_tokens(self, token_id):
            return "x"

    tallies: dict[str, LanguageTally] = {}
    tally_parallel(TokenCounter(Whitespace()), [{"eng_Latn": "a b", "fra_Latn": "a b c d"}, {"fra_Latn": "lonely words here"}], tallies)
    audit = summarize(tallies, {}, tokenizer="ws", max_seq_len=8, max_premium=1.5)
    fra = next(lang for lang in audit.languages if lang.language == "fra_Latn")
    assert fra.premium_vs_english == 2.0 and fra.flagged  # 4 tokens for English's 2; the unpaired row is not counted
    assert fra.tokens_per_word == 1.0 and fra.segments == 2
    assert next(lang for lang in audit.languages if lang.language == "eng_Latn").premium_vs_english == 1.0


def test_smollm2_spends_more_tokens_on_swahili_and_chinese_than_on_english(flores_rows):
    tallies: dict[str, LanguageTally] = {}
    tally_parallel(TokenCounter(load_offline_tokenizer("smollm2")), flores_rows, tallies)
    audit = {a.language: a for a in summarize(tallies, {}, tokenizer="smollm2", max_seq_len=256, max_premium=2.5).languages}
    assert audit["eng_Latn"].premium_vs_english == 1.0
    assert audit["swh_Latn"].premium_vs_english > 1.5 and audit["fra_Latn"].premium_vs_english > 1.2
    assert audit["zho_Hans"].tokens_per_word is None and audit["zho_Hans"].tokens_per_char > 0.5
    # byte-level BPE: Chinese characters outside its merges are split into UTF-8 byte pieces
    assert audit["zho_Hans"].partial_or_unknown_rate > audit["eng_Latn"].partial_or_unknown_rate == 0.0


def test_sentencepiece_byte_fallback_is_counted():
    tallies: dict[str, LanguageTally] = {}
    tally_parallel(TokenCounter(load_offline_tokenizer("phi3")), [{"eng_Latn": "hello", "amh_Ethi": "ሰላም ለዓለም"}], tallies)
    audit = {a.language: a for a in summarize(tallies, {}, tokenizer="phi3", max_seq_len=8, max_premium=2.5).languages}
    assert audit["amh_Ethi"].partial_or_unknown_rate > 0.5  # Ge'ez script is mostly <0xNN> byte tokens in Llama-2's vocabulary
    assert audit["amh_Ethi"].flagged


def test_truncated_share_counts_each_conversation_once_per_language():
    tallies: dict[str, LanguageTally] = {}
    tally_truncation([(("eng_Latn", "swh_Latn"), 300), (("eng_Latn", "fra_Latn"), 100), (("swh_Latn", "swh_Latn"), 10)], 256, tallies)
    audit = {a.language: a for a in summarize(tallies, {}, tokenizer="t", max_seq_len=256, max_premium=2.5).languages}
    assert audit["swh_Latn"].truncated_share == 0.5 and audit["eng_Latn"].truncated_share == 0.5
    assert audit["fra_Latn"].truncated_share == 0.0 and audit["fra_Latn"].premium_vs_english is None


def test_the_audit_reads_corpus_test_sets_and_training_chats_and_writes_the_plot(tmp_path, flores_rows):
    corpus = tmp_path / "corpus.jsonl"
    rows = flores_rows[:20]
    corpus.write_text("".join(json.dumps({"id": str(i), "texts": row}, ensure_ascii=False) + "\n" for i, row in enumerate(rows)))
    train = tmp_path / "train.jsonl"
    chats = [{"id": f"c{i}", "messages": [{"role": "user", "content": "x" * 10 * i}, {"role": "assistant", "content": "y"}],
              "meta": {"src_lang": "eng_Latn", "tgt_lang": "swh_Latn"}} for i in range(4)]
    chats.append({**chats[3], "id": "c3#2", "meta": {**chats[3]["meta"], "repeat": 2}})  # a mix repeat is no second chat
    train.write_text("".join(json.dumps(c) + "\n" for c in chats))
    spec = EvalTestSet(name="flores", kind="flores", archive=ARCHIVE, dir="devtest", directions=["eng_Latn-swh_Latn"], max_segments=2)
    audit = audit_tokenizer(load_offline_tokenizer("smollm2"), lambda convs: [len(c[0]["content"]) for c in convs],
                            corpus=corpus, train=train, test_sets=evaluation_rows([spec], ROOT), max_seq_len=15, max_premium=1.5,
                            name="smollm2")
    by_lang = {a.language: a for a in audit.languages}
    assert by_lang["swh_Latn"].sources == ("corpus", "flores") and by_lang["zho_Hans"].sources == ("corpus",)
    assert by_lang["swh_Latn"].segments == 20 + 1012  # the whole test file is audited, not only the evaluated segments
    assert by_lang["swh_Latn"].truncated_share == 0.5  # lengths 0, 10, 20, 30 against 15
    assert "swh_Latn" in [a.language for a in audit.flagged]
    files = write_audit(audit, tmp_path / "reports")
    header, *rows = (tmp_path / "reports/audit.csv").read_text().splitlines()
    assert header.startswith("language,premium_vs_english") and len(rows) == 4
    assert json.loads((tmp_path / "reports/audit.json").read_text())["flagged"] == [a.language for a in audit.flagged]
    assert files[-1].stat().st_size > 1000
