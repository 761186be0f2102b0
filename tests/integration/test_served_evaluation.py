"""evaluate.engine openai against a real `transformers serve`: the same held-out predictions and scores as
generating on the weights in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_tiny_model
from servers import BIN, free_port, running

from bayling.config.base_model import BaseModelParams
from bayling.config.evaluate import EvaluateParams
from bayling.config.register import RegisterParams
from bayling.core.errors import PipelineError
from bayling.core.records import Conversation
from bayling.evaluate.evaluation import evaluate_models

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TICO = ROOT / "data" / "sample" / "tico19"
PROMPT = {"fra_Latn": "Translate the following sentence into French.\n", "eng_Latn": "Translate the following sentence into English.\n"}


def heldout_split() -> list[Conversation]:
    lines = {lang: (TICO / f"tico19.{lang}.txt").read_text("utf-8").splitlines()[:6] for lang in ("eng_Latn", "fra_Latn")}
    chats = []
    for src, tgt in (("eng_Latn", "fra_Latn"), ("fra_Latn", "eng_Latn")):
        for i, (source, reference) in enumerate(zip(lines[src], lines[tgt])):
            chats.append(Conversation.from_json({
                "id": f"tico{i}/{src}-{tgt}",
                "messages": [{"role": "user", "content": PROMPT[tgt] + source}, {"role": "assistant", "content": reference}],
                "meta": {"task": "translate", "src_lang": src, "tgt_lang": tgt, "source_ids": [f"tico{i}"]},
            }))
    return chats


@pytest.fixture(scope="module")
def models(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("served-models")
    # wide initialisations: the random models babble words (not newlines), so predictions are worth comparing
    return {"final": make_tiny_model(tokenizer_dir, work / "final", initializer_range=0.2, seed=3),
            "base": make_tiny_model(tokenizer_dir, work / "base", initializer_range=0.2, seed=4)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """`transformers serve` with no model forced: it loads whichever folder a request names."""
    work = tmp_path_factory.mktemp("serve")
    port = free_port()
    cmd = [str(BIN / "transformers"), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    with running(cmd, f"http://127.0.0.1:{port}/health", work / "serve.log"):
        yield f"http://127.0.0.1:{port}/v1"


def run_engine(engine: str, models: dict[str, Path], root: Path, server: dict | None = None) -> dict:
    """Each prompt with its own token budget (evaluate.budget, rates from the TICO-19 corpus): a server that took
    the largest for every request would give longer replies than the local rows that stop at their own."""
    from oracles import tico_corpus

    tico_corpus(root / "data" / "raw" / "corpus.jsonl")
    params = EvaluateParams.model_validate({
        # short budgets (a quarter of the expected length, 2 more; at most 12): longer babble of random models drifts
        # apart between a server's kernels and these
        "engine": engine, "server": server or {}, "batch_size": 4, "max_new_tokens": 12, "generation_cache": None,
        "budget": {"per_source_token": 0.25, "extra": 2},
        "precision": "fp32",  # what the server loads these folders in; auto would pick bf16 on a CPU with native bf16
        "compare_with_champion": False, "test_sets": [{"name": "heldout", "kind": "heldout", "max_segments": 6}],
    })
    base = BaseModelParams(source="tiny-random", path=str(models["base"]))
    result = evaluate_models(params, base, RegisterParams(), root, models["final"], heldout_split(), "unused")
    return {"metrics": {k: v for k, v in result.metrics.items() if ".final." in k or ".base." in k},
            "predictions": {label: run.hypotheses() for label, run in result.runs.items()},
            "raw": {label: [p.raw for by_d in run.predictions.values() for ps in by_d.values() for p in ps]
                    for label, run in result.runs.items()}}


def test_served_predictions_equal_local_generation(models, server, tmp_path: Path):
    local = run_engine("hf", models, tmp_path)
    served = run_engine("openai", models, tmp_path, {"base_url": server, "max_concurrency": 2})
    assert set(local["predictions"]) == {"base", "final"}
    assert all(text for label in ("base", "final") for text in local["raw"][label])  # the models said something
    assert local["predictions"]["final"] != local["predictions"]["base"]  # two models, not one asked twice
    assert served["predictions"] == local["predictions"]
    assert served["metrics"] == local["metrics"] and any(k.endswith(".chrf_pp") for k in local["metrics"])


def test_a_server_that_fails_requests_stops_evaluation_with_the_reason(models, server, tmp_path: Path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(PipelineError, match=r"12 of 12 requests to .* \(model '.*no-such-model'\) failed \(\w+Error x"):
        run_engine("openai", models, tmp_path, {"base_url": server, "models": {"final": missing}, "max_retries": 0})
