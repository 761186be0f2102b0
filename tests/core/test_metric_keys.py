from bayling.core.metric_keys import ScoreKey, averages, directions, score_key


def test_build_and_parse_are_inverse():
    key = score_key("flores", "eng_Latn-swh_Latn", "final", "chrf_pp")
    assert key == "flores.eng_Latn-swh_Latn.final.chrf_pp"
    parsed = ScoreKey.parse(key)
    assert parsed == ScoreKey("flores", "eng_Latn-swh_Latn", "final", "chrf_pp") and str(parsed) == key
    assert str(parsed.with_model("champion")) == "flores.eng_Latn-swh_Latn.champion.chrf_pp"
    assert ScoreKey.parse("heldout.avg.base.bleu").is_average


def test_other_keys_are_not_scores():
    for key in ("signature.zho_Hans.bleu", "xcopa.sw.final.acc", "notes", "champion_version", "heldout.eng-fra.final.bleu",
                "xcopa.avg.final.acc", "xcopa.avg.base.acc_norm", "signature.flores.eng_Latn.bleu",
                "signature.avg.fra_Latn.bleu", "signature.eng_Latn-fra_Latn.fra_Latn.bleu"):
        assert ScoreKey.parse(key) is None, key


def test_averages_and_directions_read_back():
    metrics = {"h.avg.final.bleu": 2.0, "h.avg.final.chrf": 9.0, "h.avg.base.bleu": 1.0, "h.eng_Latn-fra_Latn.final.bleu": 3.0,
               "h.fra_Latn-eng_Latn.base.bleu": 1.0, "x.avg.final.bleu": 5.0, "signature.fra_Latn.bleu": "BLEU|..."}
    assert averages(metrics, "h", "final") == {"bleu": 2.0, "chrf": 9.0}
    assert directions(metrics, "h") == ["eng_Latn-fra_Latn", "fra_Latn-eng_Latn"]
    assert directions(metrics, "h", "final") == ["eng_Latn-fra_Latn"]
