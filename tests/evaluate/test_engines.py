from pathlib import Path

import pytest

from bayling.config.evaluate import EvaluateParams
from bayling.core.errors import PipelineError
from bayling.evaluate.engines import LocalReplier, ServedReplier, replier_for


def test_each_model_goes_to_its_own_server_under_its_own_name(tmp_path: Path):
    params = EvaluateParams.model_validate({"engine": "openai", "batch_size": 24, "server": {
        "base_url": "http://gpu1:8000/v1", "base_urls": {"base": "http://gpu1:8001/v1"}, "models": {"final": "bayling"}}})
    final = replier_for(params, "final", tmp_path / "models/final", tokenizer=None)
    base = replier_for(params, "base", tmp_path / "models/base", tokenizer=None)
    assert isinstance(final, ServedReplier) and isinstance(base, ServedReplier)
    assert (final.base_url, final.served_model) == ("http://gpu1:8000/v1", "bayling")
    assert (base.base_url, base.served_model) == ("http://gpu1:8001/v1", str((tmp_path / "models/base").resolve()))
    assert final.max_concurrency == 24  # batch_size, unless the server section says otherwise
    assert final.settings() != base.settings()  # the generation cache tells them apart


def test_served_evaluation_refuses_beam_search_and_local_keeps_it(tmp_path: Path):
    with pytest.raises(PipelineError, match="num_beams"):
        replier_for(EvaluateParams(engine="openai", num_beams=5), "final", tmp_path, tokenizer=None)
    local = replier_for(EvaluateParams(num_beams=5), "final", tmp_path, tokenizer=None)
    assert isinstance(local, LocalReplier) and local.settings()["num_beams"] == 5


def test_served_replies_are_asked_every_time_and_local_ones_are_remembered(tmp_path: Path):
    from bayling.evaluate.memo import translations

    class CountingServer(ServedReplier):
        calls = 0

        def __call__(self, conversations, *, max_new_tokens, first_line_only=False):
            CountingServer.calls += 1
            return [f"reply {i}" for i in range(len(conversations))]

    params = EvaluateParams(engine="openai")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    served = CountingServer("http://gpu1:8000/v1", "m", None, 4, 60.0, 0)
    prompts = [[{"role": "user", "content": "Translate: a"}], [{"role": "user", "content": "Translate: b"}]]
    cache = tmp_path / "cache"
    for _ in range(2):
        outputs, hit = translations(params, served, model_dir, prompts, cache)
        assert outputs == ["reply 0", "reply 1"] and not hit
    assert CountingServer.calls == 2 and not cache.exists()


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_bf16_where_bf16_is_native_and_the_cache_key_names_the_dtype(tmp_path: Path, monkeypatch, native):
    """evaluate.precision auto resolves on the machine: the replier's settings (a part of the generation cache's key)
    say the dtype the outputs come from, so outputs of one precision never stand in for the other's."""
    import torch

    from bayling.core import hardware
    from bayling.models.generation import weights_dtype

    monkeypatch.setattr(hardware, "native_bf16", lambda: native)
    auto = replier_for(EvaluateParams(precision="auto"), "final", tmp_path, tokenizer=None)
    pinned = replier_for(EvaluateParams(precision="fp32"), "final", tmp_path, tokenizer=None)
    assert auto.settings()["precision"] == ("bf16" if native else "fp32") and pinned.settings()["precision"] == "fp32"
    assert (auto.settings() == pinned.settings()) is (not native)
    assert weights_dtype("auto") == (torch.bfloat16 if native else torch.float32)
