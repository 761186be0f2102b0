"""The promotion gate: each rule's verdict and numbers, from a metrics.json-shaped dict."""

from bayling.config.register import GateParams
from bayling.register.gate import RuleResult, evaluate_gate, markdown_table, passed


def metrics_with_champion(candidate: float, champion: float, p_value: float) -> dict:
    return {
        "heldout.avg.final.chrf": candidate,
        "heldout.eng_Latn-fra_Latn.final.chrf": candidate,
        "heldout.eng_Latn-fra_Latn.champion.chrf": champion,
        "heldout.eng_Latn-fra_Latn.p_vs_champion.chrf": p_value,
        "champion_version": 3,
    }


def gate(**policy) -> GateParams:
    """A policy with the rules the test names; the base-model rule only where the test turns it on."""
    return GateParams.model_validate({"max_drop_vs_base": None, **policy})


def headline(changes: dict[str, tuple[float, float, float]], average: tuple[float, float, float]) -> dict:
    """metrics.json for a FLORES headline: per direction (base chrF++, fine-tuned chrF++, p against the base)."""
    metrics: dict = {"primary_test_set": "flores", "heldout.avg.final.chrf_pp": 30.0, "heldout.avg.base.chrf_pp": 40.0,
                     "heldout.avg.p_vs_base.chrf_pp": 0.001}  # a worse second test set is not the headline
    for direction, (base, final, p) in [*changes.items(), ("avg", average)]:
        metrics.update({f"flores.{direction}.base.chrf_pp": base, f"flores.{direction}.final.chrf_pp": final,
                        f"flores.{direction}.p_vs_base.chrf_pp": p, f"flores.{direction}.delta_low.chrf_pp": final - base - 1,
                        f"flores.{direction}.delta_high.chrf_pp": final - base + 0.5})
    return metrics


BASE_ONLY = GateParams(max_drop_vs_champion=None)  # the default base-model rule alone


def test_a_candidate_significantly_worse_than_its_base_fails_per_direction_and_on_average():
    worse_in_one = headline({"eng_Latn-fra_Latn": (20.0, 21.0, 0.2), "eng_Latn-swh_Latn": (20.0, 17.5, 0.01)}, (20.0, 19.25, 0.3))
    rules = {r.target: r for r in evaluate_gate(worse_in_one, BASE_ONLY)}
    assert set(rules) == {"flores.eng_Latn-fra_Latn.chrf_pp", "flores.eng_Latn-swh_Latn.chrf_pp", "flores.avg.chrf_pp"}
    swh = rules["flores.eng_Latn-swh_Latn.chrf_pp"]
    assert not swh.passed and swh.rule == "max_drop_vs_base" and swh.value == -2.5 and swh.threshold == 0.0
    assert swh.detail == "p=0.01 (Holm-adjusted over 3 tests: 0.03), 95% interval [-3.50, -2.00]"
    assert rules["flores.eng_Latn-fra_Latn.chrf_pp"].passed and rules["flores.avg.chrf_pp"].passed
    worse_on_average = headline({"eng_Latn-fra_Latn": (20.0, 19.0, 0.06)}, (20.0, 19.0, 0.01))
    assert [r.target for r in evaluate_gate(worse_on_average, BASE_ONLY) if not r.passed] == ["flores.avg.chrf_pp"]
    # a drop that could be chance passes, and so does a significant gain
    assert passed(evaluate_gate(headline({"eng_Latn-fra_Latn": (20.0, 18.0, 0.3)}, (20.0, 18.0, 0.3)), BASE_ONLY))
    assert passed(evaluate_gate(headline({"eng_Latn-fra_Latn": (20.0, 25.0, 0.001)}, (20.0, 25.0, 0.001)), BASE_ONLY))


def test_the_base_rule_is_on_by_default_and_never_passes_for_want_of_a_comparison():
    assert GateParams().max_drop_vs_base is not None and GateParams().max_drop_vs_base.metric == "chrf_pp"
    no_base = {"primary_test_set": "flores", "flores.avg.final.chrf_pp": 20.0, "flores.eng_Latn-fra_Latn.final.chrf_pp": 20.0}
    (rule,) = [r for r in evaluate_gate(no_base, GateParams(max_drop_vs_champion=None))]
    assert not rule.passed and rule.detail == "the base model was not evaluated (evaluate.evaluate_base)"
    untested = {**no_base, "flores.avg.base.chrf_pp": 19.0, "flores.eng_Latn-fra_Latn.base.chrf_pp": 19.0}
    results = evaluate_gate(untested, GateParams(max_drop_vs_champion=None))
    assert not passed(results) and {r.detail for r in results} == {"no paired test against the base model (run evaluate again)"}
    assert passed(evaluate_gate(untested, GateParams(max_drop_vs_champion=None, max_drop_vs_base=None)))


def test_a_significant_drop_beyond_the_allowance_fails():
    results = evaluate_gate(
        metrics_with_champion(40.0, 42.5, 0.01), gate(max_drop_vs_champion={"metric": "chrf", "points": 1.0, "alpha": 0.05})
    )
    (rule,) = [r for r in results if r.rule == "max_drop_vs_champion"]
    assert not rule.passed and rule.value == -2.5 and rule.threshold == -1.0
    assert rule.target == "heldout.eng_Latn-fra_Latn.chrf" and "p=0.01" in rule.detail
    assert not passed(results)


def test_a_large_drop_that_is_not_significant_passes():
    results = evaluate_gate(metrics_with_champion(40.0, 42.5, 0.3), gate())
    assert passed(results)


def test_a_small_significant_drop_within_the_allowance_passes():
    results = evaluate_gate(metrics_with_champion(42.0, 42.5, 0.001), gate(max_drop_vs_champion={"points": 1.0}))
    assert passed(results)


def test_minimum_scores_and_missing_metrics():
    metrics = {"heldout.avg.final.chrf": 9.5}
    results = evaluate_gate(
        metrics, gate(min_scores={"heldout.avg.final.chrf": 10.0, "flores.avg.final.bleu": 1.0}, max_drop_vs_champion=None)
    )
    by_target = {r.target: r for r in results}
    assert not by_target["heldout.avg.final.chrf"].passed and by_target["heldout.avg.final.chrf"].value == 9.5
    assert not by_target["flores.avg.final.bleu"].passed and by_target["flores.avg.final.bleu"].detail == "metric missing"
    assert passed(evaluate_gate(metrics, gate(min_scores={"heldout.avg.final.chrf": 9.0}, max_drop_vs_champion=None)))


def test_required_test_sets_must_be_in_the_report():
    results = evaluate_gate({"heldout.avg.final.chrf": 9.5}, gate(required_test_sets=["heldout", "wmt22"]))
    verdicts = {r.target: r.passed for r in results if r.rule == "required_test_set"}
    assert verdicts == {"heldout": True, "wmt22": False}


def test_without_a_champion_the_drop_rule_passes_and_says_why():
    (rule,) = evaluate_gate({"heldout.avg.final.chrf": 9.5}, gate())
    assert rule.passed and rule.detail == "no champion to compare with"


def test_markdown_table_marks_failures():
    table = markdown_table([RuleResult("min_score", "heldout.avg.final.chrf", 9.5, 10.0, False, "")])
    assert table.splitlines()[0].startswith("| rule |")
    assert "| min_score | heldout.avg.final.chrf | 9.5 | 10 | **FAIL** |" in table


def test_the_drop_rule_never_passes_for_want_of_a_comparison():
    """A champion exists, but the candidate's directions were never compared with it (a new split, say)."""
    metrics = {"heldout.avg.final.chrf": 9.5, "heldout.eng_Latn-fra_Latn.final.chrf": 9.5, "heldout.fra_Latn-eng_Latn.final.chrf": 9.1}
    (rule,) = evaluate_gate(metrics, gate(), champion="3")
    assert not rule.passed and rule.detail == "no comparison with the champion was made"
    partial = {**metrics, "champion_version": 3, "heldout.eng_Latn-fra_Latn.champion.chrf": 9.4,
               "heldout.eng_Latn-fra_Latn.p_vs_champion.chrf": 0.4}
    rules = {r.target: r for r in evaluate_gate(partial, gate(), champion="3")}
    assert rules["heldout.eng_Latn-fra_Latn.chrf"].passed
    missing = rules["heldout.fra_Latn-eng_Latn.chrf"]
    assert not missing.passed and missing.detail == "not compared with champion v3"
    stale = evaluate_gate(metrics_with_champion(42.0, 42.0, 0.5), gate(), champion="4")
    assert not passed(stale) and stale[-1].detail == "evaluated against version 3"


def test_a_drop_is_significant_only_when_the_interval_excludes_zero_and_enough_segments_could_show_it():
    """sacreBLEU's p-value alone said 0.001 for two FLORES segments whose change had the 95% interval [-1.65, +0.43]
    (the smoke flow's fine-tuned model, which the gate then refused). With n segments no paired test can reach
    p < alpha unless 2 * 0.5**n < alpha (the exact sign test): 6 segments at alpha 0.05."""
    def metrics(n: int, low: float, high: float, p: float) -> dict:
        out = headline({"swh_Latn-eng_Latn": (6.69, 5.70, p)}, (6.69, 5.70, p))
        for direction in ("swh_Latn-eng_Latn", "avg"):
            out.update({f"flores.{direction}.delta_low.chrf_pp": low, f"flores.{direction}.delta_high.chrf_pp": high,
                        f"flores.{direction}.segments": n})
        return out

    spans_zero = evaluate_gate(metrics(8, -1.65, 0.43, 0.001), BASE_ONLY)
    assert passed(spans_zero) and all("the 95% interval includes 0" in r.detail for r in spans_zero)
    too_few = evaluate_gate(metrics(2, -2.0, -1.0, 0.001), BASE_ONLY)
    assert passed(too_few) and all("2 segments: a paired test needs 6 to reach p < 0.05" in r.detail for r in too_few)
    real = evaluate_gate(metrics(8, -3.0, -0.5, 0.01), BASE_ONLY)
    assert not passed(real) and [r.target for r in real if not r.passed] == ["flores.swh_Latn-eng_Latn.chrf_pp", "flores.avg.chrf_pp"]
    # the champion rule reads the same evidence
    champion = {**metrics_with_champion(40.0, 42.5, 0.001), "heldout.eng_Latn-fra_Latn.delta_vs_champion_low.chrf": -4.0,
                "heldout.eng_Latn-fra_Latn.delta_vs_champion_high.chrf": 0.5, "heldout.eng_Latn-fra_Latn.segments": 8}
    (rule,) = [r for r in evaluate_gate(champion, gate()) if r.rule == "max_drop_vs_champion"]
    assert rule.passed and "the 95% interval includes 0" in rule.detail
    # a significant gain is named one (the default run's French to English read "[+2.77, +10.17]; includes 0")
    gain = evaluate_gate(metrics(50, 2.77, 10.17, 0.001), BASE_ONLY)
    assert passed(gain) and all("a gain: the 95% interval lies above 0" in r.detail and "includes 0" not in r.detail for r in gain)


def test_the_base_rule_holds_its_family_of_directions_to_alpha():
    """Six directions and the average, each a small drop at p = 0.02: tested one by one at 0.05 all seven would fail,
    and a model no different from its base would be refused about one time in seven. Holm's adjustment (7 x 0.02)
    keeps them; one clear drop among them still fails."""
    directions = ["eng_Latn-fra_Latn", "fra_Latn-eng_Latn", "eng_Latn-zho_Hans", "zho_Hans-eng_Latn", "eng_Latn-swh_Latn",
                  "swh_Latn-eng_Latn"]
    small = headline({d: (20.0, 19.5, 0.02) for d in directions}, (20.0, 19.5, 0.02))
    results = evaluate_gate(small, BASE_ONLY)
    assert passed(results) and all("Holm-adjusted over 7 tests: 0.14" in r.detail for r in results)
    clear = headline({**{d: (20.0, 19.5, 0.3) for d in directions}, "eng_Latn-swh_Latn": (20.0, 15.0, 0.001)}, (20.0, 18.9, 0.2))
    assert [r.target for r in evaluate_gate(clear, BASE_ONLY) if not r.passed] == ["flores.eng_Latn-swh_Latn.chrf_pp"]


def test_the_version_tag_stays_valid_json_however_many_rules_fail():
    """One rule per headline direction: a held-out headline over many languages made a tag MLflow cut at 5,000
    characters, in the middle of its JSON."""
    import json

    from bayling.register.gate import summary_tag

    results = [RuleResult("max_drop_vs_base", f"heldout.eng_Latn-x{i:03d}_Latn.chrf_pp", -1.0, 0.0, False,
                          "p=0.001 (Holm-adjusted over 200 tests: 0.2), 95% interval [-2.00, -0.50]") for i in range(200)]
    tag = summary_tag(results)
    summary = json.loads(tag)
    assert len(tag) <= 5000 and summary["passed"] is False and summary["rules"] == summary["failed_count"] == 200
    assert 0 < len(summary["failed"]) < 200 and summary["failed"][0] == "max_drop_vs_base heldout.eng_Latn-x000_Latn.chrf_pp"
    assert json.loads(summary_tag(results[:1])) == {"passed": False, "rules": 1, "failed_count": 1,
                                                    "failed": ["max_drop_vs_base heldout.eng_Latn-x000_Latn.chrf_pp"],
                                                    "every_rule": "gate.json in the register run"}
