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
    assert "final_term_usage" not in row  # no constrained set: the columns are the sacreBLEU metrics' alone


def test_term_usage_keys_average_over_directions_get_deltas_and_columns_on_every_row():
    from bayling.core.metric_keys import ScoreKey
    from bayling.evaluate.scores import term_usage_scores
    from bayling.evaluate.terms import TermUsage

    good = score_corpus(["the cat sat"], [["the cat sat"]], "eng_Latn")
    usage = {"eng_Latn-zho_Hans": TermUsage(found=3, asked=4, items=2, item_mean=0.5),
             "zho_Hans-eng_Latn": TermUsage(found=1, asked=3, items=2, item_mean=0.25)}
    metrics = {**flat_scores("wmt", "final", {"fra_Latn-eng_Latn": good}), **flat_scores("c", "final", {d: good for d in usage}),
               **term_usage_scores("c", "final", usage), **term_usage_scores("c", "base", {d: TermUsage(0, 4, 2, 0.0) for d in usage})}
    assert term_usage_scores("wmt", "final", {}) == {}
    assert metrics["c.eng_Latn-zho_Hans.final.term_usage"] == 0.75 and metrics["c.zho_Hans-eng_Latn.final.term_usage"] == 0.3333
    assert metrics["c.avg.final.term_usage"] == round((0.75 + 1 / 3) / 2, 4) and metrics["c.avg.final.term_usage_items"] == 0.375
    assert ScoreKey.parse("c.avg.final.term_usage") == ScoreKey("c", "avg", "final", "term_usage")
    assert deltas(metrics, "c")["c.avg.delta.term_usage_items"] == 0.375
    rows = per_language_rows(metrics, ["wmt", "c"], ["final", "base"])
    assert [set(r) == set(rows[0]) for r in rows] == [True] * 3  # one set of columns for the CSV
    assert rows[0]["final_term_usage"] is None and rows[1]["final_term_usage"] == 0.75 and rows[2]["base_term_usage_items"] == 0.0
