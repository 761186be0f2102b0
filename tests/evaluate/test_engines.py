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
