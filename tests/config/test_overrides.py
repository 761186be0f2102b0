"""-S params overrides, as dvc exp run -S has them."""

import pytest

from bayling.config.overrides import apply_overrides, parse_override
from bayling.core.errors import PipelineError


def test_parse_override_reads_values_as_yaml():
    assert parse_override("train.max_steps=10") == (["train", "max_steps"], 10)
    assert parse_override("register.gate.min_scores={heldout.avg.final.chrf: 9.5}") == (
        ["register", "gate", "min_scores"], {"heldout.avg.final.chrf": 9.5})
    assert parse_override("evaluate.comet_model=null") == (["evaluate", "comet_model"], None)
    for bad in ("train.max_steps", "max_steps=3"):
        with pytest.raises(PipelineError):
            parse_override(bad)


def test_apply_overrides_keeps_comments_and_refuses_unknown_sections(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("# top comment\ntrain:\n  max_steps: 4   # few\n  learning_rate: 1.0e-3\nregister:\n  gate:\n    min_scores: {}\n")
    apply_overrides(params, {"train.max_steps": 7, "register.gate.min_scores": {"heldout.avg.final.chrf": 9.0}})
    text = params.read_text()
    assert "# top comment" in text and "max_steps: 7   # few" in text and "learning_rate: 1.0e-3" in text
    import yaml

    assert yaml.safe_load(text)["register"]["gate"]["min_scores"] == {"heldout.avg.final.chrf": 9.0}
    with pytest.raises(PipelineError, match="no section trian"):
        apply_overrides(params, {"trian.max_steps": 1})
