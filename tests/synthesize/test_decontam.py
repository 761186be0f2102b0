import json
from pathlib import Path

from bayling.synthesize.decontam import Decontaminator, ngram_digests, read_eval_texts, strings_in, tokens

EVAL = [
    "The quick brown fox jumps over the lazy dog near the old river bank today.",
    "北京是中华人民共和国的首都，也是全国的政治文化中心。",
]


def index(n=13):
    d = Decontaminator(n=n)
    d.add("demo", EVAL)
    return d


def test_exact_sentence_after_normalisation():
    assert index().match("the QUICK brown fox jumps over the lazy dog near the old river bank today!!") == ("demo", "sentence")


def test_long_overlap_by_word_ngram():
    text = "Yesterday I saw that the quick brown fox jumps over the lazy dog near the old river bank, again."
    assert index().match(text) == ("demo", "13-gram")
    assert index().match("The quick brown fox jumps over the lazy cat.") is None


def test_unsegmented_scripts_use_character_ngrams():
    assert tokens("北京是首都")[:2] == ["北", "京"]
    assert index().match("他说北京是中华人民共和国的首都，我同意。") == ("demo", "13-gram")
    assert len(list(ngram_digests("北京是中华人民共和国", 13))) == 0


def test_reading_eval_sets(tmp_path: Path):
    (tmp_path / "x.devtest").write_text("one\n\ntwo\n")
    (tmp_path / "b80.jsonl").write_text(json.dumps({"text": ["first turn", "second turn"], "category": "generic"}) + "\n")
    assert list(read_eval_texts([tmp_path / "x.devtest"], "lines", ())) == ["one", "two"]
    assert list(read_eval_texts([tmp_path / "b80.jsonl"], "jsonl", ("text",))) == ["first turn", "second turn"]
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    assert list(strings_in(chat, ("messages",))) == ["hi", "hello"]
