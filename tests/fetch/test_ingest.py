import json
from pathlib import Path

import pytest

from bayling.core.errors import PipelineError
from bayling.core.records import CorpusRow
from bayling.fetch.ingest import (
    CorpusBuilder,
    Problem,
    Quarantined,
    check_texts,
    normalize_text,
    parse_jsonl_line,
    parse_source,
)


def test_normalize_text_collapses_whitespace_and_composes():
    assert normalize_text("  e\u0301te\u0301 \t au\n  soleil ") == "\u00e9t\u00e9 au soleil"


def test_check_texts_reports_every_problem():
    texts, problems = check_texts({"eng_Latn": "Hi", "fra_latn": "Salut", "deu_Latn": "  "}, required=["swh_Latn"])
    fields = {p.field: p.reason for p in problems}
    assert texts == {"eng_Latn": "Hi"}
    assert "did you mean 'fra_Latn'" in fields["texts.fra_latn"]
    assert fields["texts.deu_Latn"] == "empty text"
    assert fields["texts.swh_Latn"] == "missing language"


def test_a_single_language_row_is_rejected():
    _, problems = check_texts({"eng_Latn": "alone"})
    assert [p.reason for p in problems] == ["needs text in at least two languages"]


@pytest.mark.parametrize(
    "raw, field, reason",
    [
        (b'{"texts": {"eng_Latn": "a", ', None, "invalid JSON"),
        (b'["eng_Latn", "a"]', None, "row must be a JSON object"),
        (b'{"id": "x"}', "texts", "missing field"),
        (b'{"texts": {"eng_Latn": "caf\xe9", "fra_Latn": "b"}}', None, "invalid UTF-8 at byte 27"),
        (b'{"texts": {"eng_Latn": "a", "fra_Latn": ""}}', "texts.fra_Latn", "empty text"),
        (b"   ", None, "blank line"),
    ],
)
def test_jsonl_line_problems_name_the_field(raw, field, reason):
    record = parse_jsonl_line("src", "in.jsonl", 7, raw, required=[])
    assert isinstance(record, Quarantined)
    assert (record.file, record.line, record.problems[0].field) == ("in.jsonl", 7, field)
    assert record.problems[0].reason.startswith(reason)


def test_jsonl_line_with_required_language_missing():
    record = parse_jsonl_line("src", "in.jsonl", 3, b'{"texts": {"eng_Latn": "a", "fra_Latn": "b"}}', ["swh_Latn"])
    assert isinstance(record, Quarantined)
    assert record.describe() == "in.jsonl:3: texts.swh_Latn: missing language"


def test_good_jsonl_line_keeps_its_id():
    record = parse_jsonl_line("src", "in.jsonl", 3, b'{"id": "s-1", "texts": {"eng_Latn": " a ", "fra_Latn": "b"}}')
    assert record == CorpusRow("src:s-1", "src", {"eng_Latn": "a", "fra_Latn": "b"}, "in.jsonl", 3)


def test_parallel_files_must_be_line_aligned(tmp_path: Path):
    (tmp_path / "a.en").write_text("one\ntwo\n")
    (tmp_path / "a.fr").write_text("un\n")
    with pytest.raises(PipelineError, match="a.en has 2 lines, a.fr has 1 lines"):
        list(parse_source("s", "parallel", {"eng_Latn": tmp_path / "a.en", "fra_Latn": tmp_path / "a.fr"},
                          {"eng_Latn": "a.en", "fra_Latn": "a.fr"}))


def test_parallel_rows_and_quarantine(tmp_path: Path):
    (tmp_path / "a.en").write_bytes(b"one\n\ntwo\nthr\xffee\n")
    (tmp_path / "a.fr").write_bytes(b"un\ndeux\n\ntrois\n")
    records = list(parse_source("s", "parallel", {"eng_Latn": tmp_path / "a.en", "fra_Latn": tmp_path / "a.fr"},
                                {"eng_Latn": "a.en", "fra_Latn": "a.fr"}))
    assert [type(r).__name__ for r in records] == ["CorpusRow", "Quarantined", "Quarantined", "Quarantined"]
    assert records[1].problems[0].field == "texts.eng_Latn"
    assert records[2].problems[0].field == "texts.fra_Latn"
    assert records[3].problems[0].reason == "invalid UTF-8 at byte 3 in a.en"


def test_tsv_column_count_is_checked(tmp_path: Path):
    (tmp_path / "b.tsv").write_text("hello\tbonjour\nonly one column\n")
    records = list(parse_source("t", "tsv", {"file": tmp_path / "b.tsv"}, {"file": "b.tsv"}, columns=["eng_Latn", "fra_Latn"]))
    assert isinstance(records[0], CorpusRow) and records[0].texts["fra_Latn"] == "bonjour"
    assert records[1].problems[0].reason == "expected 2 tab-separated columns (eng_Latn, fra_Latn), found 1"


def test_builder_quarantines_duplicates_and_balances_the_books():
    builder = CorpusBuilder(dedupe=True)
    rows = [
        CorpusRow("s:1", "s", {"eng_Latn": "a", "fra_Latn": "b"}, "f", 1),
        CorpusRow("s:2", "s", {"eng_Latn": "a", "fra_Latn": "b"}, "f", 2),
        CorpusRow("s:1", "s", {"eng_Latn": "c", "fra_Latn": "d"}, "f", 3),
        Quarantined("s", "f", 4, (Problem(None, "blank line"),), ""),
    ]
    out = [builder.admit(r) for r in rows]
    assert isinstance(out[0], CorpusRow)
    assert out[1].problems[0].reason == "duplicate of s:1"
    assert out[2].problems[0].reason == "duplicate id 's:1'"
    stats = builder.stats["s"]
    assert (stats["rows_in"], stats["rows_kept"], stats["rows_quarantined"]) == (4, 1, 3)
    assert stats["rows_in"] == stats["rows_kept"] + stats["rows_quarantined"]


def test_json_forms():
    record = Quarantined("s", "f.jsonl", 2, (Problem("texts.eng_Latn", "empty text"), Problem("id", "bad")), "raw")
    assert record.to_json() == {
        "source": "s", "file": "f.jsonl", "line": 2, "field": "texts.eng_Latn", "reason": "empty text",
        "problems": [{"field": "texts.eng_Latn", "reason": "empty text"}, {"field": "id", "reason": "bad"}], "raw": "raw",
    }
    row = CorpusRow("s:1", "s", {"eng_Latn": "a", "fra_Latn": "b"}, "f", 1)
    assert json.loads(json.dumps(row.to_json())) == {"id": "s:1", "source": "s", "texts": {"eng_Latn": "a", "fra_Latn": "b"}}
