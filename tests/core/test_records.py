import json
import pickle

from bayling.core.records import CorpusRow


def test_a_corpus_row_reads_back_what_it_writes_without_where_fetch_found_it():
    row = CorpusRow("s:1", "s", {"eng_Latn": "Wash your hands.", "zho_Hans": "洗手。"}, "in.jsonl", 3)
    line = json.dumps(row.to_json(), ensure_ascii=False)
    assert line == '{"id": "s:1", "source": "s", "texts": {"eng_Latn": "Wash your hands.", "zho_Hans": "洗手。"}}'
    assert CorpusRow.from_json(json.loads(line)) == CorpusRow("s:1", "s", row.texts)
    assert CorpusRow.from_json({"id": "a", "texts": {}}).source == ""  # a hand-written corpus may leave it out


def test_a_corpus_row_pickles_for_the_dask_workers():
    row = CorpusRow("s:1", "s", {"eng_Latn": "a", "fra_Latn": "b"})
    assert pickle.loads(pickle.dumps(row)) == row
