"""The one reader of test set files: per direction for evaluate, parallel rows for the tokenizer audit, every
segment of every file for decontamination; on the shipped FLORES archive and on small planted files."""

import tarfile
from pathlib import Path

import pytest

from bayling.config.evaluate import EvalTestSet
from bayling.core.errors import PipelineError
from bayling.core.test_sets import direction_texts, every_segment, parallel_rows, read_segments, set_files

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = "data/sample/flores200/flores200-devtest.tar.gz"
LANGUAGES = ["eng_Latn", "fra_Latn", "swh_Latn", "zho_Hans"]


@pytest.fixture(scope="module")
def flores_lines() -> dict[str, list[str]]:
    """The archive's files read without the reader, as a check on it."""
    with tarfile.open(ROOT / ARCHIVE) as archive:
        return {code: archive.extractfile(f"devtest/{code}.devtest").read().decode("utf-8").splitlines() for code in LANGUAGES}


def flores(*directions: str) -> EvalTestSet:
    return EvalTestSet(name="flores", kind="flores", archive=ARCHIVE, dir="devtest", directions=list(directions), max_segments=2)


def wmt(tmp_path: Path, src: str, *refs: str) -> EvalTestSet:
    (tmp_path / "src.txt").write_text(src)
    for i, ref in enumerate(refs):
        (tmp_path / f"ref{i}.txt").write_text(ref)
    return EvalTestSet(name="wmt", kind="wmt", direction="zho_Hans-eng_Latn", src="src.txt",
                       refs=[f"ref{i}.txt" for i in range(len(refs))])


def test_a_flores_set_gives_each_direction_its_whole_files(flores_lines):
    texts = direction_texts(flores("eng_Latn-swh_Latn", "zho_Hans-eng_Latn"), ROOT)
    assert [t.direction for t in texts] == ["eng_Latn-swh_Latn", "zho_Hans-eng_Latn"]
    assert texts[0].sources == flores_lines["eng_Latn"] and texts[0].references == [flores_lines["swh_Latn"]]
    assert texts[1].sources == flores_lines["zho_Hans"] and len(texts[1].sources) == 1012  # not cut to max_segments


def test_parallel_rows_hold_the_languages_of_the_directions_in_code_order(flores_lines):
    rows = parallel_rows(flores("swh_Latn-eng_Latn", "eng_Latn-fra_Latn"), ROOT)
    assert len(rows) == 1012 and list(rows[0]) == ["eng_Latn", "fra_Latn", "swh_Latn"]
    assert rows[7] == {code: flores_lines[code][7] for code in ("eng_Latn", "fra_Latn", "swh_Latn")}


def test_every_segment_covers_every_language_file_not_only_those_evaluated(flores_lines):
    spec = flores("eng_Latn-swh_Latn")
    assert [path.name for path in set_files(spec, ROOT)] == [f"{code}.devtest" for code in LANGUAGES]
    assert list(every_segment(spec, ROOT)) == [line for code in LANGUAGES for line in flores_lines[code]]


def test_a_wmt_set_is_its_source_and_references(tmp_path):
    spec = wmt(tmp_path, "源一\n源二\n", "one\ntwo\n", "first\nsecond\n")
    (texts,) = direction_texts(spec, tmp_path)
    assert (texts.direction, texts.sources) == ("zho_Hans-eng_Latn", ["源一", "源二"])
    assert texts.references == [["one", "two"], ["first", "second"]]
    assert parallel_rows(spec, tmp_path) == [{"zho_Hans": "源一", "eng_Latn": "one"}, {"zho_Hans": "源二", "eng_Latn": "two"}]
    assert list(every_segment(spec, tmp_path)) == ["源一", "源二", "one", "two", "first", "second"]


def test_files_that_disagree_or_are_missing_are_named(tmp_path):
    with pytest.raises(PipelineError, match="src.txt has 2 lines but ref0.txt has 1"):
        direction_texts(wmt(tmp_path, "a\nb\n", "a\n"), tmp_path)
    (tmp_path / "flores").mkdir()
    (tmp_path / "flores" / "eng_Latn.devtest").write_text("a\nb\n")
    (tmp_path / "flores" / "fra_Latn.devtest").write_text("a\n")
    spec = EvalTestSet(name="mine", kind="flores", dir="flores", directions=["eng_Latn-fra_Latn", "eng_Latn-swh_Latn"])
    with pytest.raises(PipelineError, match=r"test set mine \(swh_Latn\) .*swh_Latn.devtest: file not found"):
        direction_texts(spec, tmp_path)
    with pytest.raises(PipelineError, match="files in .*flores differ in length: eng_Latn 2, fra_Latn 1"):
        parallel_rows(spec.model_copy(update={"directions": ["eng_Latn-fra_Latn"]}), tmp_path)
    with pytest.raises(PipelineError, match=r"test set mine: no file matches \{code\}.dev in"):
        set_files(spec.model_copy(update={"pattern": "{code}.dev"}), tmp_path)
    with pytest.raises(PipelineError, match="test set heldout is of kind heldout, not a set of files"):
        list(every_segment(EvalTestSet(name="heldout", kind="heldout"), tmp_path))


def test_read_segments_keeps_blank_lines_and_drops_a_byte_order_mark(tmp_path):
    (tmp_path / "x.txt").write_bytes(b"\xef\xbb\xbfone\r\n\ntwo\n")
    warnings: list[str] = []
    assert read_segments(tmp_path / "x.txt", "test", warnings) == ["one", "", "two"]
    assert warnings and "byte-order mark" in warnings[0]


def test_a_constrained_set_is_its_rows_sources_and_references(tmp_path):
    """BayLing's lexically constrained JSONL: decontamination gets every row's source and reference (not its JSON
    line), the audit the two side by side, evaluate the rows with their terms."""
    from bayling.core.test_sets import constrained_rows

    (tmp_path / "c.jsonl").write_text('{"src": "源一", "tgt": "one", "constraint": ["one"]}\n\n'
                                      '{"src": "源二", "tgt": "two too", "constraint": ["two", "too"]}\n', "utf-8")
    spec = EvalTestSet(name="c", kind="constrained", direction="zho_Hans-eng_Latn", src="c.jsonl")
    assert [(r.line, r.source, r.reference, r.terms) for r in constrained_rows(spec, tmp_path)] == [
        (1, "源一", "one", ("one",)), (3, "源二", "two too", ("two", "too"))]
    (texts,) = direction_texts(spec, tmp_path)
    assert (texts.direction, texts.sources, texts.references) == ("zho_Hans-eng_Latn", ["源一", "源二"], [["one", "two too"]])
    assert parallel_rows(spec, tmp_path) == [{"zho_Hans": "源一", "eng_Latn": "one"}, {"zho_Hans": "源二", "eng_Latn": "two too"}]
    assert list(every_segment(spec, tmp_path)) == ["源一", "源二", "one", "two too"]
    assert set_files(spec, tmp_path) == [tmp_path / "c.jsonl"]
