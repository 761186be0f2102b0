import csv

import pytest
import sacrebleu

from bayling.errors import PipelineError
from bayling.metrics import macro_average, score_corpus

WMT_PAIRS = {"zh-en": "eng_Latn", "en-zh": "zho_Hans", "de-en": "eng_Latn", "en-de": "deu_Latn"}


def _official(shared_data):
    scores = {}
    with open(shared_data / "wmt22" / "automatic-scores.tsv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            scores[(row["pair"], row["system"], row["metric"])] = float(row["score"])
    return scores


@pytest.mark.parametrize("pair, system", [("en-zh", "HuaweiTSC"), ("zh-en", "JDExploreAcademy"), ("en-de", "Online-B")])
def test_matches_official_wmt22_scores(shared_data, pair, system):
    folder = shared_data / "wmt22" / pair
    hyp = (folder / f"sys-{system}.txt").read_text("utf-8").splitlines()
    ref_a = (folder / "refA.txt").read_text("utf-8").splitlines()
    ref_b = (folder / "refB.txt").read_text("utf-8").splitlines()
    official = _official(shared_data)
    single = score_corpus(hyp, [ref_a], WMT_PAIRS[pair])
    assert round(single.bleu, 2) == round(official[(pair, system, "bleu-A")], 2)
    assert round(single.chrf, 2) == round(official[(pair, system, "chrf-A")], 2)
    both = score_corpus(hyp, [ref_b, ref_a], WMT_PAIRS[pair])
    assert round(both.bleu, 2) == round(official[(pair, system, "bleu-all")], 2)
    assert round(both.chrf, 2) == round(official[(pair, system, "chrf-all")], 2)
    expected_tokenizer = "zh" if pair.endswith("zh") else "13a"
    assert f"tok:{expected_tokenizer}" in single.signatures["bleu"]


def test_chrf_pp_is_word_order_two():
    hyps, refs = ["the cat sat on the mat"], ["the cat is on the mat"]
    scores = score_corpus(hyps, [refs], "eng_Latn")
    assert scores.chrf_pp == sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score
    assert "nw:2" in scores.signatures["chrf_pp"] and "nw:0" in scores.signatures["chrf"]


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(PipelineError, match="reference stream 1 has 2 segments but there are 1 hypotheses"):
        score_corpus(["a"], [["a", "b"]], "eng_Latn")


def test_macro_average():
    a = score_corpus(["a b c d"], [["a b c d"]], "eng_Latn")
    b = score_corpus(["x y"], [["a b c d"]], "eng_Latn")
    avg = macro_average([a, b])
    assert avg["chrf"] == pytest.approx((a.chrf + b.chrf) / 2)
