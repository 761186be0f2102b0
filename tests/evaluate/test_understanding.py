"""Understanding tasks through lm-evaluation-harness itself: XCOPA from local files with the Hub and the network off,
equal to the native engine document for document; the paired test on documents; the gate's understanding rule."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bayling.config.evaluate import EvaluateParams
from bayling.config.register import GateParams
from bayling.core.errors import PipelineError
from bayling.evaluate import understanding_runs
from bayling.evaluate.outcomes import BASE, CHAMPION, ItemOutcome, compare, mcnemar_p, moved, outcome_files, paired_p, read_outcomes, rows
from bayling.evaluate.understanding import metric_key_part, run_tasks, served_lm_args
from bayling.register.gate import evaluate_gate

ROOT = Path(__file__).resolve().parents[2]
XCOPA = "../shared/data/mc/xcopa/data"  # relative to the project root, as a user writes it in params.yaml


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def no_network(monkeypatch):
    """Any connection beyond loopback fails the test: lm-eval must not reach the Hub."""
    real = socket.socket.connect
    attempts = []

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"network is off in this test: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def both_engines(limit: int) -> EvaluateParams:
    return EvaluateParams(
        xcopa={"dir": XCOPA, "languages": ["sw", "zh"], "max_items": limit},
        understanding=[{"name": "xcopa_lm", "tasks": {"sw": "xcopa_sw", "zh": "xcopa_zh"}, "include_path": "lm_eval_tasks/xcopa",
                        "data_dir": XCOPA, "limit": limit}])


def test_xcopa_through_lm_eval_from_local_files_equals_native_document_for_document(tiny, tiny_model_dir, no_network):
    model, tokenizer = tiny
    params = both_engines(limit=40)
    run = understanding_runs.score_model(params, "final", tiny_model_dir, lambda: model, tokenizer, ROOT,
                                         lambda p: (ROOT / p).resolve())
    assert no_network == []
    for lang in ("sw", "zh", "avg"):
        for metric in ("acc", "acc_norm"):
            assert run.metrics[f"xcopa_lm.{lang}.final.{metric}"] == run.metrics[f"xcopa.{lang}.final.{metric}"]
    for lang in ("sw", "zh"):
        native, harness = run.outcomes["xcopa"][lang], run.outcomes["xcopa_lm"][lang]
        assert len(native) == len(harness) == 40
        # same task name, document (lm-eval's own hash of it), prompt, and right-or-wrong under both metrics
        assert native == harness
    # a random tiny model is near chance: the equality is not two constant answers
    outcomes = [o.scores["acc"] for lang in ("sw", "zh") for o in run.outcomes["xcopa"][lang]]
    assert 0 < sum(outcomes) < len(outcomes)


def test_lm_eval_log_likelihoods_equal_native_ones(tiny):
    from lm_eval.api.instance import Instance

    from bayling.evaluate.understanding import local_lm
    from bayling.evaluate.xcopa import loglikelihoods, read_xcopa

    model, tokenizer = tiny
    items = read_xcopa(ROOT / XCOPA / "sw" / "test.sw.jsonl", "sw", limit=12)
    pairs = [pair for item in items for pair in item.requests()]
    ours = loglikelihoods(model, tokenizer, pairs, batch_size=5)
    lm = local_lm(model, tokenizer, batch_size=7)
    theirs = [ll for ll, _ in lm.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)])]
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_an_unknown_task_missing_data_and_an_unreported_metric_are_clear_errors(tiny, tmp_path):
    from bayling.evaluate.understanding import local_lm

    model, tokenizer = tiny
    lm = local_lm(model, tokenizer, 4)
    spec = EvaluateParams(understanding=[{"name": "x", "tasks": {"sw": "no_such_task_sw"}, "include_path": "lm_eval_tasks/xcopa",
                                          "data_dir": XCOPA}]).understanding[0]
    with pytest.raises(PipelineError, match="has no task or group no_such_task_sw or in lm_eval_tasks/xcopa"):
        run_tasks(spec, lm, "final", ROOT)
    spec = EvaluateParams(understanding=[{"name": "x", "tasks": {"sw": "xcopa_sw"}, "include_path": "lm_eval_tasks/xcopa",
                                          "data_dir": str(tmp_path / "absent")}]).understanding[0]
    with pytest.raises(PipelineError, match="is not a folder"):
        run_tasks(spec, lm, "final", ROOT)
    # the shipped sample has no Estonian: the task's data file is missing, said as such
    spec = EvaluateParams(understanding=[{"name": "x", "tasks": {"et": "xcopa_et"}, "include_path": "lm_eval_tasks/xcopa",
                                          "data_dir": "data/sample/xcopa", "limit": 2}]).understanding[0]
    with pytest.raises(PipelineError, match="lm-eval could not read a task's data"):
        run_tasks(spec, lm, "final", ROOT)
    # a metric the task does not report names the ones it does
    spec = EvaluateParams(understanding=[{"name": "x", "tasks": {"sw": "xcopa_sw"}, "include_path": "lm_eval_tasks/xcopa",
                                          "data_dir": "data/sample/xcopa", "limit": 2, "metrics": ["f1"]}]).understanding[0]
    with pytest.raises(PipelineError, match=r"reports no 'f1' for xcopa_sw \(it reports acc,none, acc_norm,none"):
        run_tasks(spec, lm, "final", ROOT)


def test_a_hub_task_with_the_hub_off_is_a_clear_error_and_no_connection(tiny, no_network):
    """lm-eval's own xcopa_sw reads cambridgeltl/xcopa from the Hub: with offline (the default) that is refused at once,
    in words that say what to do, and nothing tries the network."""
    from bayling.evaluate.understanding import local_lm

    model, tokenizer = tiny
    spec = EvaluateParams(understanding=[{"name": "xcopa", "tasks": ["xcopa_sw"], "limit": 2}]).understanding[0]
    with pytest.raises(PipelineError, match="with offline: true each task must read local files"):
        run_tasks(spec, local_lm(model, tokenizer, 4), "final", ROOT)
    assert no_network == []


def test_understanding_config_reads_languages_and_refuses_clashes():
    entry = EvaluateParams(understanding=[{"name": "belebele", "tasks": ["belebele_swh_Latn", "belebele_zho_Hans"]}]).understanding[0]
    assert entry.languages() == {"swh_Latn": "belebele_swh_Latn", "zho_Hans": "belebele_zho_Hans"}
    assert entry.metrics == ["acc", "acc_norm"] and entry.offline is True
    with pytest.raises(ValueError, match="does not start with 'mmlu_'"):
        EvaluateParams(understanding=[{"name": "mmlu", "tasks": ["mmlu"]}])
    assert EvaluateParams(understanding=[{"name": "mmlu", "tasks": {"en": "mmlu"}}]).understanding[0].languages() == {"en": "mmlu"}
    with pytest.raises(ValueError, match="names both an understanding entry and a test set"):
        EvaluateParams(understanding=[{"name": "heldout", "tasks": {"en": "mmlu"}}])
    with pytest.raises(ValueError, match="'avg' cannot be a language"):
        EvaluateParams(understanding=[{"name": "x", "tasks": {"avg": "mmlu"}}])
    with pytest.raises(ValueError, match="not an lm-eval metric"):
        EvaluateParams(understanding=[{"name": "x", "tasks": {"en": "mmlu"}, "metrics": ["acc.norm"]}])
    assert metric_key_part("acc,none") == "acc" and metric_key_part("exact_match,flexible-extract") == "exact_match_flexible-extract"


def test_a_served_model_goes_to_lm_eval_local_completions(tmp_path, monkeypatch):
    params = EvaluateParams(engine="openai", server={"base_url": "http://127.0.0.1:8000/v1/", "models": {"final": "cand"},
                                                      "base_urls": {"base": "http://127.0.0.1:8001/v1"}, "max_concurrency": 3})
    final = served_lm_args(params, "final", tmp_path)
    assert final["base_url"] == "http://127.0.0.1:8000/v1/completions" and final["model"] == "cand"
    assert final["tokenizer"] == str(tmp_path.resolve()) and final["num_concurrent"] == 3
    base = served_lm_args(params, "base", tmp_path)
    assert base["base_url"] == "http://127.0.0.1:8001/v1/completions" and base["model"] == str(tmp_path.resolve())
    assert "header" not in base
    monkeypatch.setenv("SERVED_KEY", "s3cret")
    keyed = served_lm_args(params.model_copy(update={"server": params.server.model_copy(update={"api_key_env": "SERVED_KEY"})}),
                           "final", tmp_path)
    assert keyed["header"] == {"Authorization": "Bearer s3cret"}


def test_mcnemar_equals_scipy_exact_binomial_test():
    from scipy.stats import binomtest

    for better, worse, same in ((7, 0, 3), (12, 5, 40), (3, 3, 0), (0, 9, 1), (30, 18, 100)):
        ours = [1.0] * better + [0.0] * worse + [1.0] * same
        theirs = [0.0] * better + [1.0] * worse + [1.0] * same
        assert mcnemar_p(ours, theirs) == pytest.approx(binomtest(better, better + worse, 0.5).pvalue)
    assert mcnemar_p([1.0, 0.0], [1.0, 0.0]) == 1.0
    # a graded metric goes to the sign-flip test: a constant gain on 12 documents is as extreme as it gets
    p = paired_p([0.5] * 12, [0.25] * 12, samples=2000, seed=1)
    assert p < 0.002


def _outcomes(task: str, values: list[float]) -> list[ItemOutcome]:
    return [ItemOutcome(task, i, f"d{i}", f"p{i}", {"acc": v}) for i, v in enumerate(values)]


def test_paired_comparison_keys_pooling_and_stored_outcomes(tmp_path):
    final = {"xnli": {"sw": _outcomes("xnli_sw", [1.0] * 10 + [0.0] * 10), "en": _outcomes("xnli_en", [1.0] * 20)}}
    base = {"xnli": {"sw": _outcomes("xnli_sw", [0.0] * 10 + [0.0] * 10), "en": _outcomes("xnli_en", [1.0] * 20)}}
    metrics = compare(final, base, BASE)
    assert metrics["xnli.sw.delta.acc"] == 0.5 and metrics["xnli.sw.p_vs_base.acc"] == round(2 / 2**10, 4)
    assert metrics["xnli.en.delta.acc"] == 0.0 and metrics["xnli.en.p_vs_base.acc"] == 1.0
    assert metrics["xnli.avg.delta.acc"] == 0.25 and metrics["xnli.avg.items"] == 40
    champion = compare(final, base, CHAMPION)
    assert champion["xnli.sw.champion.acc"] == 0.0 and champion["xnli.sw.delta_vs_champion.acc"] == 0.5
    # documents posed differently cannot be paired
    other = {"xnli": {"sw": [ItemOutcome("xnli_sw", 0, "x", "p0", {"acc": 1.0})] * 20}}
    with pytest.raises(ValueError, match="different documents"):
        compare(final, other, BASE)
    outcome_files(final, tmp_path)
    assert read_outcomes(tmp_path, "xnli", "sw") == final["xnli"]["sw"]
    (tmp_path / "xnli" / "en.jsonl").write_text("{not json\n")
    assert read_outcomes(tmp_path, "xnli", "en") is None and read_outcomes(tmp_path, "xnli", "fr") is None
    scores = {"xnli.sw.final.acc": 0.5, "xnli.sw.base.acc": 0.0, "xnli.avg.final.acc": 0.75, **metrics}
    # English did not move; Swahili did, and with it the pooled documents
    assert moved(scores, ["xnli"]) == [
        {"task": "xnli", "language": "avg", "metric": "acc", "against": "base", "final": 0.75, "change": 0.25,
         "p": metrics["xnli.avg.p_vs_base.acc"], "direction": "up", "items": 40},
        {"task": "xnli", "language": "sw", "metric": "acc", "against": "base", "final": 0.5, "change": 0.5,
         "p": metrics["xnli.sw.p_vs_base.acc"], "direction": "up", "items": 20}]
    assert moved(scores, ["xnli"], alpha=0.001) == []
    table = rows(scores, ["xnli"], ["final", "base", "champion"])
    assert [(r["test_set"], r["direction"]) for r in table] == [("xnli", "en"), ("xnli", "sw"), ("xnli", "avg")]
    assert table[1]["final_acc"] == 0.5 and table[1]["p_vs_base_acc"] == metrics["xnli.sw.p_vs_base.acc"]


def _gate_metrics(sw_change: float, sw_p: float, champion: dict[str, float] | None = None) -> dict[str, float]:
    metrics = {"primary_test_set": "flores", "xcopa.sw.final.acc": 0.5, "xcopa.zh.final.acc": 0.6, "xcopa.avg.final.acc": 0.55,
               "xcopa.sw.delta.acc": sw_change, "xcopa.sw.p_vs_base.acc": sw_p, "xcopa.zh.delta.acc": 0.0,
               "xcopa.zh.p_vs_base.acc": 1.0, "xcopa.avg.delta.acc": sw_change / 2, "xcopa.avg.p_vs_base.acc": sw_p * 2,
               "xcopa.sw.items": 100, "xcopa.zh.items": 100, "xcopa.avg.items": 200}
    metrics.update(champion or {})
    return metrics


def test_gate_refuses_a_significant_drop_on_a_named_understanding_task():
    policy = GateParams(max_drop_vs_base=None, max_drop_vs_champion=None,
                        understanding={"tasks": ["xcopa"], "metric": "acc", "against": ["base", "champion"]})
    failed = [r for r in evaluate_gate(_gate_metrics(-0.12, 0.001), policy) if not r.passed]
    # Swahili, and the pooled documents it drags down (p 0.002, Holm-adjusted 0.004)
    assert [(r.rule, r.target) for r in failed] == [("understanding_vs_base", "xcopa.sw.acc"), ("understanding_vs_base", "xcopa.avg.acc")]
    assert "Holm-adjusted over 3 tests: 0.003" in failed[0].detail and failed[0].value == -0.12
    # a gain as significant passes, and so does a drop Holm's adjustment leaves above alpha
    assert all(r.passed for r in evaluate_gate(_gate_metrics(+0.12, 0.001), policy))
    assert all(r.passed for r in evaluate_gate(_gate_metrics(-0.05, 0.02), policy))
    # no champion: passes and says so; a champion the evaluation was not compared with fails
    results = evaluate_gate(_gate_metrics(+0.1, 0.5), policy)
    assert [r.detail for r in results if r.rule == "understanding_vs_champion"] == ["no champion to compare with"]
    results = evaluate_gate(_gate_metrics(+0.1, 0.5), policy, champion="3")
    assert [(r.passed, r.detail) for r in results if r.rule == "understanding_vs_champion"] == [(False, "not compared with champion v3")]
    compared = {"champion_version": 3, "xcopa.sw.delta_vs_champion.acc": -0.2, "xcopa.sw.p_vs_champion.acc": 0.0001,
                "xcopa.zh.delta_vs_champion.acc": 0.0, "xcopa.zh.p_vs_champion.acc": 1.0,
                "xcopa.avg.delta_vs_champion.acc": -0.1, "xcopa.avg.p_vs_champion.acc": 0.01}
    failed = [r for r in evaluate_gate(_gate_metrics(+0.1, 0.5, compared), policy, champion="3") if not r.passed]
    assert [(r.rule, r.target) for r in failed] == [("understanding_vs_champion", "xcopa.sw.acc"),
                                                    ("understanding_vs_champion", "xcopa.avg.acc")]
    # a task the evaluation never ran, or without the base model, fails instead of passing unseen
    missing = GateParams(max_drop_vs_base=None, max_drop_vs_champion=None, understanding={"tasks": ["belebele"]})
    assert [r.passed for r in evaluate_gate(_gate_metrics(0.0, 1.0), missing)] == [False]
    no_base = {k: v for k, v in _gate_metrics(0.0, 1.0).items() if "p_vs_base" not in k}
    assert not all(r.passed for r in evaluate_gate(no_base, policy))


def test_every_task_the_profiles_name_is_one_lm_eval_knows(repo_root):
    """The paper profiles name Hub tasks by lm-eval's names; a rename in a new lm-eval release fails here, not on a cluster."""
    from bayling.config.loader import parse_yaml
    from bayling.evaluate.understanding import task_manager

    known = set(task_manager(None, True).all_tasks)
    named = {}
    for profile in sorted((repo_root / "profiles").glob("*.yaml")):
        evaluate = (parse_yaml(profile.read_text("utf-8"), profile) or {}).get("evaluate") or {}
        for entry in EvaluateParams(understanding=evaluate.get("understanding")).understanding or []:
            if entry.include_path is None:
                named.update({task: profile.name for task in entry.languages().values()})
    assert len(named) >= 20
    assert {task: where for task, where in named.items() if task not in known} == {}


def test_a_group_by_name_scores_its_tasks_and_aggregates_as_lm_eval_does(tiny):
    """lm-eval's own `xcopa` group (its 11 tasks, here read from the local copies): acc is the group's own
    size-weighted aggregate; acc_norm, which the group does not aggregate, is the same weighted mean of its tasks."""
    from bayling.evaluate.understanding import local_lm

    model, tokenizer = tiny
    spec = EvaluateParams(understanding=[{"name": "copa", "tasks": {"all": "xcopa"}, "include_path": "lm_eval_tasks/xcopa",
                                          "data_dir": XCOPA, "limit": 3}]).understanding[0]
    run = run_tasks(spec, local_lm(model, tokenizer, 8), "final", ROOT)
    outcomes = run.outcomes["copa"]["all"]
    assert len(outcomes) == 33 and len({o.task for o in outcomes}) == 11
    for metric in ("acc", "acc_norm"):
        mean = sum(o.scores[metric] for o in outcomes) / 33
        assert run.metrics[f"copa.all.final.{metric}"] == pytest.approx(mean, abs=1e-4)
        assert run.metrics[f"copa.avg.final.{metric}"] == run.metrics[f"copa.all.final.{metric}"]
