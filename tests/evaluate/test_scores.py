from bayling.core.metric_keys import averages
from bayling.evaluate.metrics import score_corpus
from bayling.evaluate.scores import deltas, flat_scores, per_language_rows


def test_flat_report_keys_deltas_and_rows():
    good = score_corpus(["the cat sat"], [["the cat sat"]], "eng_Latn")
    poor = score_corpus(["a dog"], [["the cat sat"]], "eng_Latn")
    metrics = {**flat_scores("wmt", "final", {"fra_Latn-eng_Latn": good}), **flat_scores("wmt", "base", {"fra_Latn-eng_Latn": poor})}
    metrics.update(deltas(metrics, "wmt"))
    assert metrics["wmt.fra_Latn-eng_Latn.final.chrf"] == round(good.chrf, 4)
    assert metrics["wmt.avg.delta.chrf"] == round(round(good.chrf, 4) - round(poor.chrf, 4), 4)
    assert averages(metrics, "wmt", "final") == {
        "bleu": round(good.bleu, 4),
        "chrf": round(good.chrf, 4),
        "chrf_pp": round(good.chrf_pp, 4),
    }
    (row,) = per_language_rows(metrics, ["wmt"], ["final", "base", "champion"])
    assert row["direction"] == "fra_Latn-eng_Latn" and row["final_bleu"] == round(good.bleu, 4) and row["champion_bleu"] is None
