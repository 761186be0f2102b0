import json
from pathlib import Path

import pytest

from bayling.synthesize.decontam import Decontaminator, load_decontaminator, ngram_digests, read_eval_texts, strings_in, tokens

ROOT = Path(__file__).resolve().parents[2]

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


def _default_params():
    from bayling.config.loader import load_all

    return load_all(ROOT / "params.yaml")


def test_a_named_test_set_indexes_what_the_old_file_form_did():
    """params.yaml's `against: [flores]` holds the very sentences and n-grams the FLORES archive's `eval_sets` entry
    (every devtest file, 4 x 1012 lines) did before, so the same training text is removed."""
    from bayling.config.synthesize import DecontaminationParams

    params = _default_params()
    assert params["synthesize"].decontamination.against == ["flores"]
    named = load_decontaminator(params["synthesize"].decontamination, params["evaluate"].test_sets, ROOT)
    old_form = DecontaminationParams.model_validate({"ngram": 13, "extra": [{
        "name": "flores", "format": "lines", "archive": "data/sample/flores200/flores200-devtest.tar.gz",
        "paths": ["devtest/*.devtest"]}]})
    files = load_decontaminator(old_form, [], ROOT)
    assert named is not None and files is not None
    assert named.sizes == files.sizes == {"flores": 4 * 1012}
    assert named._sentences == files._sentences and named._ngrams == files._ngrams


def test_named_sets_come_first_then_the_extra_ones(tmp_path: Path):
    from bayling.config.evaluate import EvalTestSet
    from bayling.config.synthesize import DecontaminationParams
    from bayling.core.errors import PipelineError

    (tmp_path / "src.txt").write_text(EVAL[0] + "\n")
    (tmp_path / "ref.txt").write_text(EVAL[1] + "\n")
    (tmp_path / "b80.jsonl").write_text(json.dumps({"text": "Write a poem about the sea and the wind over the hills at night."}) + "\n")
    wmt = EvalTestSet(name="wmt", kind="wmt", direction="eng_Latn-zho_Hans", src="src.txt", refs=["ref.txt"])
    params = DecontaminationParams.model_validate({"against": ["wmt"], "extra": [{"name": "b80", "format": "jsonl", "paths": ["*.jsonl"]}]})
    index = load_decontaminator(params, [wmt], tmp_path)
    assert index is not None and index.sizes == {"wmt": 2, "b80": 1}
    assert index.match(EVAL[1]) == ("wmt", "sentence")
    assert load_decontaminator(DecontaminationParams(), [wmt], tmp_path) is None
    with pytest.raises(PipelineError, match="against: 'flores' is not a test set of evaluate.test_sets"):
        load_decontaminator(DecontaminationParams(against=["flores"]), [wmt], tmp_path)
