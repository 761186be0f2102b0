"""Names that become parts of metrics.json keys or registry aliases: two things may never share one."""

import pytest
from pydantic import ValidationError

from bayling.config.evaluate import EvaluateParams
from bayling.config.register import RegisterParams
from bayling.config.synthesize import DecontaminationParams

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
WMT = {"kind": "wmt", "direction": "eng_Latn-fra_Latn", "src": "s.txt", "refs": ["r.txt"]}


@pytest.mark.parametrize("label", ["final", "base", "delta", "champion", "p_vs_base", "delta_low", "p_vs_champion", "ratio_vs_gpt-4"])
def test_a_reference_system_may_not_take_a_models_label(label):
    """A reference system's scores are keyed {set}.{direction}.{system}.{metric}: one called `final` overwrote the
    fine-tuned model's own scores, which the gate, the card and the review then read."""
    with pytest.raises(ValidationError, match=f"reference system '{label}' would share metrics.json keys with the model label"):
        EvaluateParams.model_validate({"test_sets": [{"name": "w", **WMT, "reference_systems": {label: {"eng_Latn-fra_Latn": "x"}}}]})


def test_a_multiple_choice_set_may_not_share_a_test_sets_name():
    """Both lead their keys: an XCOPA set called `flores` put accuracy into FLORES's averages and satisfied
    `required_test_sets: [flores]` by itself."""
    with pytest.raises(ValidationError, match="'flores' names both a translation test set and a multiple-choice set"):
        EvaluateParams.model_validate({"test_sets": [{"name": "flores", **WMT}],
                                       "xcopa": {"name": "flores", "dir": "x", "languages": ["sw"]}})


@pytest.mark.parametrize("name", ["signature", "instructions"])
def test_a_test_set_may_not_take_a_name_the_report_uses(name):
    with pytest.raises(ValidationError, match=f"test set name '{name}' is taken by metrics.json's own"):
        EvaluateParams.model_validate({"test_sets": [{"name": name, **WMT}]})
    with pytest.raises(ValidationError, match=f"multiple-choice set name '{name}' is taken by metrics.json's own"):
        EvaluateParams.model_validate({"test_sets": [{"name": "w", **WMT}], "xcopa": {"name": name, "dir": "x", "languages": ["sw"]}})


def test_the_candidate_alias_is_not_the_champion_alias():
    """register sets the candidate alias on a gate pass: were it the champion alias, no approval would be asked."""
    with pytest.raises(ValidationError, match="register.alias and register.champion_alias must differ"):
        RegisterParams(alias="champion", champion_alias="champion")


def test_decontamination_sets_are_named_once():
    """The card counts segments per set name; two sets of one name were added together."""
    with pytest.raises(ValidationError, match="decontamination set names must be unique"):
        DecontaminationParams.model_validate({"extra": [{"name": "wmt", "format": "lines", "paths": ["a"]},
                                                        {"name": "wmt", "format": "lines", "paths": ["b"]}]})
    with pytest.raises(ValidationError, match="decontamination set names must be unique"):
        DecontaminationParams.model_validate({"against": ["flores"], "extra": [{"name": "flores", "format": "lines", "paths": ["a"]}]})


def _params_with(decontamination: dict) -> dict:
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text("utf-8"))
    params["synthesize"]["decontamination"] = {"ngram": 13, **decontamination}
    return params


@pytest.mark.parametrize(("against", "message"), [
    (["flores", "flores200"], r"synthesize.decontamination.against\[1\]: 'flores200' is not a test set of evaluate.test_sets "
                              r"\(flores, heldout\)"),
    (["heldout"], r"synthesize.decontamination.against\[0\]: 'heldout' is the held-out split synthesize itself makes"),
])
def test_decontamination_names_test_sets_that_are_files(against, message):
    """Decontamination reads the evaluate.test_sets it names: an unknown name, or the held-out split (synthesize's own
    output), is a params problem found before any stage runs, at its key."""
    from bayling.config.loader import validate_sections
    from bayling.core.errors import PipelineError

    with pytest.raises(PipelineError, match=message):
        validate_sections(_params_with({"against": against}), ["synthesize", "evaluate"], root=ROOT)
    assert validate_sections(_params_with({"against": ["flores"]}), ["synthesize", "evaluate"], root=ROOT)


def test_the_old_eval_sets_key_says_what_replaced_it():
    with pytest.raises(ValidationError, match="eval_sets was replaced: name evaluate.test_sets in `against`"):
        DecontaminationParams.model_validate({"eval_sets": [{"name": "f", "format": "lines", "paths": ["a"]}]})


@pytest.mark.parametrize("where", ["test set", "reference system", "multiple-choice set"])
def test_no_name_that_leads_or_sits_in_a_key_holds_a_dot(where):
    """A key is {test_set}.{direction}.{model}.{metric}: a dotted name gives a key with more parts, which no reader
    parses, so its scores vanish from every table (a reference system called gpt-3.5-turbo did)."""
    spec = {"name": "wmt22.zh-en", **WMT} if where == "test set" else {"name": "w", **WMT}
    if where == "reference system":
        spec["reference_systems"] = {"gpt-3.5-turbo": {"eng_Latn-fra_Latn": "x"}}
    extra = {"xcopa": {"name": "xcopa.v2", "dir": "x", "languages": ["sw"]}} if where == "multiple-choice set" else {}
    with pytest.raises(ValidationError, match="String should match pattern"):
        EvaluateParams.model_validate({"test_sets": [spec], **extra})


def test_the_base_rule_and_an_unevaluated_base_are_refused_together_before_anything_runs():
    """Without the base model's scores the rule can only fail: refused when params load (the flow loads them all,
    the evaluate stage its own sections and register's), not after training."""
    import yaml

    from bayling.config.loader import validate_sections
    from bayling.core.errors import PipelineError

    params = yaml.safe_load((ROOT / "params.yaml").read_text("utf-8"))
    params["evaluate"]["evaluate_base"] = False
    text = yaml.safe_dump(params)
    with pytest.raises(PipelineError, match=r"params.yaml:\d+: register.gate.max_drop_vs_base: compares the fine-tuned model with "
                                            r"its base, but evaluate.evaluate_base is false"):
        validate_sections(params, ["evaluate", "register"], text=text)
    params["register"]["gate"]["max_drop_vs_base"] = None
    assert validate_sections(params, ["evaluate", "register"])["evaluate"].evaluate_base is False
