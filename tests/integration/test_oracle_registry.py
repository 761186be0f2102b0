"""The champion comparison, its paired bootstrap and the review, and the gate against the base model, run with
stand-in repliers (tests/oracles.py) against a real MLflow server and a really registered champion.

The champion's outputs reach the candidate's evaluation two ways: from the predictions stored with its
registered version, or, when those cover other items, translated again by its registered model. Either way
every direction must be compared with the champion's outputs for that direction.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from oracles import (
    FLORES_DIRECTIONS,
    FLORES_SEGMENTS,
    REFERENCE,
    SILENT,
    SOURCE,
    TAGGED,
    WMT_SEGMENTS,
    Evaluation,
    OracleReplier,
    World,
    evaluate,
    make_world,
    read_jsonl,
    sacrebleu_scores,
)

from bayling.config.register import RegisterParams
from bayling.config.tracking import TrackingParams

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("oracle-project"), tokenizer_dir)


@pytest.fixture
def tracking(mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    return mlflow_uri


def register(root: Path, evaluation: Evaluation, model_dir: Path, register_params: RegisterParams):
    """The register stage's library call on an evaluation written into root/reports/eval: gate, log, register."""
    from bayling.register.report import registration_report
    from bayling.register.run import RegisterInputs, register_model

    final = root / "models" / "final"
    shutil.copytree(model_dir, final, dirs_exist_ok=True)
    shutil.copytree(ROOT / "bayling", root / "bayling", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    inputs = RegisterInputs(metrics=evaluation.metrics, train_run={}, eval_run={}, params={}, data_card={}, train_metrics={})
    registration, rules, verdict, sha = register_model(register_params, TrackingParams(experiment="oracles"), inputs, root, final)
    return registration_report(registration, rules, verdict, sha, os.environ["MLFLOW_TRACKING_URI"]), rules


def make_champion(world: World, root: Path, model_dir: Path, name: str) -> str:
    """A version of `name` whose stored predictions are a tagging replier's, holding the champion alias."""
    import mlflow

    evaluation = evaluate(world, root / "reports" / "eval", final=TAGGED, base=SOURCE)
    report, _ = register(root, evaluation, model_dir, RegisterParams(model_name=name))
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", report["version"])
    return report["version"]


def candidate_against(world: World, out: Path, name: str, tracking_uri: str, retranslate: OracleReplier | None) -> Evaluation:
    """A candidate that answers with the references, compared with the champion of `name`; a champion re-translation
    goes to `retranslate` (None: it must not happen)."""
    from bayling.evaluate import engines

    def champion_replier(params, folder, tokenizer):
        assert retranslate is not None, "the champion's stored predictions covered every item: nothing to translate again"
        assert (folder / "config.json").is_file()  # the registered model's own folder, downloaded from the registry
        return retranslate

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engines, "local_replier", champion_replier)
        return evaluate(world, out, final=REFERENCE, base=SOURCE, params=world.params(compare_with_champion=True),
                        register=RegisterParams(model_name=name), tracking_uri=tracking_uri)


def assert_compared_with_each_directions_own_champion_outputs(world: World, candidate: Evaluation, version: str) -> None:
    metrics = candidate.metrics
    assert metrics["champion_version"] == int(version)
    for (test_set, direction), truths in world.table.ordered.items():
        if test_set == "heldout":
            truths = [world.table.by_id[row["id"]] for row in candidate.rows("final", test_set, direction)]
        expected = sacrebleu_scores([TAGGED(t) for t in truths], [list(s) for s in zip(*(t.references for t in truths))],
                                    direction.split("-")[1])
        for metric, value in expected.items():
            assert metrics[f"{test_set}.{direction}.champion.{metric}"] == pytest.approx(value, abs=1e-4), (test_set, direction, metric)
        change = metrics[f"{test_set}.{direction}.final.chrf_pp"] - metrics[f"{test_set}.{direction}.champion.chrf_pp"]
        assert metrics[f"{test_set}.{direction}.delta_vs_champion.chrf_pp"] == pytest.approx(change, abs=2e-4)
    listed = 0
    for entry in candidate.review["directions"]:
        assert entry["comparator"] == "champion" and entry["comparator_label"] == f"vs champion v{version}"
        tag = f"[{entry['test_set']} {entry['direction']}] "
        for segment in entry["regressed"] + entry["improved"]:
            listed += 1
            assert segment["comparator_output"].startswith(tag), (entry["direction"], segment["comparator_output"][:50])
    assert listed >= 40


def test_the_champion_is_compared_direction_by_direction_from_its_stored_predictions(world, tiny_model_dir, tracking, tmp_path):
    import os

    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    version = make_champion(world, tmp_path / "champion", tiny_model_dir, "oracle-stored")
    candidate = candidate_against(world, tmp_path / "candidate", "oracle-stored", tracking, retranslate=None)
    assert "champion_regenerated_segments" not in candidate.metrics
    assert_compared_with_each_directions_own_champion_outputs(world, candidate, version)
    # the p-values are sacreBLEU's own paired bootstrap of these outputs
    truths = world.table.ordered["flores", "eng_Latn-zho_Hans"]
    os.environ["SACREBLEU_SEED"] = "13"
    try:
        _, results = PairedTest([("champion", [TAGGED(t) for t in truths]), ("final", [REFERENCE(t) for t in truths])],
                                {"bleu": BLEU(tokenize="zh"), "chrf": CHRF(), "chrf_pp": CHRF(word_order=2)},
                                [[t.references[0] for t in truths]], test_type="bs", n_samples=200)()
    finally:
        del os.environ["SACREBLEU_SEED"]
    expected = [results[key][1].p_value for key in results if key != "System"]
    assert [candidate.metrics[f"flores.eng_Latn-zho_Hans.p_vs_champion.{m}"] for m in ("bleu", "chrf", "chrf_pp")] == \
        pytest.approx(expected, abs=1e-6)


def test_a_champion_whose_stored_predictions_do_not_fit_is_translated_again_direction_by_direction(world, tiny_model_dir, tracking,
                                                                                                   tmp_path):
    """Predictions stored before item ids named their direction (`flores:1` in every direction's file) are not
    trusted: the champion's registered model translates those items again."""
    champion_root = tmp_path / "champion"
    version = make_champion(world, champion_root, tiny_model_dir, "oracle-retranslated")
    import mlflow

    client = mlflow.MlflowClient()
    run_id = client.get_model_version("oracle-retranslated", version).tags["register_run_id"]
    stale = tmp_path / "stale" / "predictions"
    shutil.copytree(champion_root / "reports" / "eval" / "predictions", stale)
    for path in list((stale / "final" / "flores").glob("*.jsonl")) + list((stale / "final" / "wmt22-zh-en").glob("*.jsonl")):
        rows = read_jsonl(path)
        path.write_text("".join(json.dumps({**row, "id": f"{path.parent.name}:{i + 1}"}) + "\n" for i, row in enumerate(rows)))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifacts(str(stale), "predictions")  # overwrite the stored predictions with the old-format ones
    retranslate = OracleReplier(world.table, TAGGED, "champion")
    candidate = candidate_against(world, tmp_path / "candidate", "oracle-retranslated", tracking, retranslate)
    assert candidate.metrics["champion_regenerated_segments"] == 6 * FLORES_SEGMENTS + WMT_SEGMENTS
    assert sorted(set(retranslate.asked)) == sorted({f"flores/{d}" for d in FLORES_DIRECTIONS} | {"wmt22-zh-en/zho_Hans-eng_Latn"})
    assert_compared_with_each_directions_own_champion_outputs(world, candidate, version)


def test_a_candidate_significantly_worse_than_its_base_model_is_not_proposed(world, tiny_model_dir, tracking, tmp_path):
    """The gate's base-model rule, on by default: a fine-tuned model that lost what its base could do gets no
    `candidate` alias, and register.json names the rule and the directions; one that gained gets it."""
    worse_root, better_root = tmp_path / "worse", tmp_path / "better"
    worse = evaluate(world, worse_root / "reports" / "eval", final=SILENT, base=REFERENCE)
    report, rules = register(worse_root, worse, tiny_model_dir, RegisterParams(model_name="oracle-worse"))
    assert report["alias"] in (None, "") and not report["gate"]["passed"]
    assert report["gate"]["failed"] == [f"max_drop_vs_base flores.{d}.chrf_pp" for d in sorted(FLORES_DIRECTIONS)] + \
        ["max_drop_vs_base flores.avg.chrf_pp"]
    failed = [r for r in rules if not r.passed]
    assert all(r.value < 0 and r.detail.startswith("p=") and "95% interval" in r.detail for r in failed)
    better = evaluate(world, better_root / "reports" / "eval", final=REFERENCE, base=SOURCE)
    report, _ = register(better_root, better, tiny_model_dir, RegisterParams(model_name="oracle-better"))
    assert report["alias"] == "candidate" and report["gate"]["failed"] == []
