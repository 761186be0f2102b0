"""-S params overrides, as dvc exp run -S has them: values read as YAML 1.2, the merged params validated before
anything is written, and a write that changes the overridden values and nothing else."""

import difflib
from pathlib import Path

import pytest
import yaml

from bayling.config.overrides import apply_overrides, parse_override
from bayling.core.errors import PipelineError


@pytest.fixture
def params_copy(tmp_path: Path, repo_root: Path) -> Path:
    """The committed params.yaml in a scratch folder whose data/ is the project's (fetch's files must exist)."""
    (tmp_path / "data").symlink_to(repo_root / "data", target_is_directory=True)
    params = tmp_path / "params.yaml"
    params.write_bytes((repo_root / "params.yaml").read_bytes())
    return params


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(lines removed, lines added) between two texts."""
    removed, added = [], []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0):
        if line.startswith("-") and not line.startswith("---"):
            removed.append(line[1:])
        elif line.startswith("+") and not line.startswith("+++"):
            added.append(line[1:])
    return removed, added


def test_parse_override_reads_values_as_yaml():
    assert parse_override("train.max_steps=10") == (["train", "max_steps"], 10)
    assert parse_override("register.gate.min_scores={heldout.avg.final.chrf: 9.5}") == (
        ["register", "gate", "min_scores"], {"heldout.avg.final.chrf": 9.5})
    assert parse_override("evaluate.comet_model=null") == (["evaluate", "comet_model"], None)
    for bad in ("train.max_steps", "max_steps=3", "train.lora={r: 8"):
        with pytest.raises(PipelineError):
            parse_override(bad)


# What YAML 1.2's core schema (what `dvc exp run -S` reads) makes of each spelling; YAML 1.1 reads several differently.
YAML_12 = [
    ("2e-5", 2e-5), ("1e3", 1000.0), (".5", 0.5), ("-1.5E+2", -150.0), ("1.0e-4", 1e-4), ("3.", 3.0), (".inf", float("inf")),
    ("10", 10), ("-3", -3), ("010", 10), ("0o17", 15), ("0x1F", 31),
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("Y", "Y"), ("1_000", "1_000"), ("2024-01-02", "2024-01-02"),
    ("1:30", "1:30"), ("e5", "e5"), ("0o8", "0o8"),
    ("null", None), ("~", None), ("", None), ("NULL", None),
    ("true", True), ("false", False), ("True", True), ("FALSE", False),
    ("[1e3, yes, ~]", [1000.0, "yes", None]), ("{a: 2e-5, b: off}", {"a": 2e-5, "b": "off"}), ("'2e-5'", "2e-5"),
]


@pytest.mark.parametrize(("raw", "expected"), YAML_12)
def test_override_values_are_read_as_yaml_1_2(raw, expected):
    _, value = parse_override(f"train.x={raw}")
    assert value == expected and type(value) is type(expected), (raw, value)


def test_yaml_1_2_reading_agrees_with_ruamel_where_ruamel_follows_the_core_schema():
    """ruamel.yaml (DVC's YAML library) reads YAML 1.2 but keeps two YAML 1.1 forms the core schema dropped: `1_000` as a
    number and `2024-01-02` as a date. Everything else must read the same."""
    from ruamel.yaml import YAML

    ruamel = YAML(typ="safe", pure=True)
    for raw, expected in YAML_12:
        if raw in ("1_000", "2024-01-02"):
            continue
        theirs = ruamel.load(f"x: {raw}")["x"]
        assert theirs == expected and type(theirs) is type(expected), (raw, theirs)


# Each refused for its own reason; the message must name the key the user typed (or the section it replaces).
REFUSED = [
    ({"train.max_steps": -3}, r"train\.max_steps.*greater than 0"),
    ({"train.max_stepz": 3}, r"train\.max_stepz.*unknown key.*max_steps"),
    ({"train.lora.rank": 8}, r"train\.lora\.rank.*unknown key"),
    ({"trian.max_steps": 3}, r"trian.*unknown section.*train"),
    ({"train.learning_rate": "2e-5"}, r"train\.learning_rate.*valid number"),
    ({"train.lora": {"r": 8}}, r"train\.lora is a section.*alpha, dropout, target_modules would fall back.*train\.lora\.r=8"),
    ({"register.gate": {"min_scores": {}}}, r"register\.gate is a section"),
    ({"train.max_steps.x": 1}, r"train\.max_steps is not a mapping"),
    ({"base_model.hf_id.x": 1}, r"base_model\.hf_id is not a mapping"),
    ({"train.hostfile": "infra/hostfile"}, r"hostfile.*launcher: deepspeed"),  # a rule across keys of one section
    ({"evaluate.evaluate_base": False}, r"max_drop_vs_base"),  # a rule across sections
    ({"train.max_steps": 5, "train.epochs": -1}, r"train\.epochs"),  # one bad among good ones
]


@pytest.mark.parametrize(("overrides", "message"), REFUSED)
def test_a_refused_override_leaves_params_yaml_byte_identical(params_copy: Path, overrides, message):
    before = params_copy.read_bytes()
    with pytest.raises(PipelineError, match=message) as refused:
        apply_overrides(params_copy, overrides)
    assert params_copy.read_bytes() == before
    assert "unchanged" in str(refused.value)


def test_a_valid_override_changes_only_its_own_lines(params_copy: Path):
    before = params_copy.read_text("utf-8")
    apply_overrides(params_copy, {
        "train.learning_rate": 2e-5,  # as `-S train.learning_rate=2e-5` reads it
        "train.epochs": 2,  # a null replaced
        "synthesize.system_prompt": "Answer: briefly",  # a string that needs quoting
        "train.lora.r": 8,  # inside a flow mapping
        "register.gate.min_scores": {"heldout.avg.final.chrf": 9.5},
        "evaluate.server.models.final": "bayling",  # a key added to an empty flow mapping
        "train.plan.shape": "profiles/shapes/llama3-8b.json",  # a key added to a block mapping
    })
    after = params_copy.read_text("utf-8")
    removed, added = changed_lines(before, after)
    # each changed line keeps its comment, in its column where the new value leaves room
    assert removed == [
        "  system_prompt: null                # null keeps the chat template's own default",
        "  lora: {r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}",
        "  epochs: null                       # passes over the data; when set, it decides the steps and max_steps is not used",
        "  learning_rate: 1.0e-4",
        "    models: {}                       # {final: name, base: name} as the server knows them; absent: the folder's absolute path",
        "    min_scores: {}                   # e.g. {heldout.avg.final.chrf: 10.0}",
    ]
    assert added == [
        "  system_prompt: 'Answer: briefly'   # null keeps the chat template's own default",
        "  lora: {r: 8, alpha: 32, dropout: 0.05, target_modules: all-linear}",
        "  epochs: 2                          # passes over the data; when set, it decides the steps and max_steps is not used",
        "  learning_rate: 2.0e-05",
        "    shape: profiles/shapes/llama3-8b.json",
        "    models: {final: bayling}         # {final: name, base: name} as the server knows them; absent: the folder's absolute path",
        "    min_scores: {heldout.avg.final.chrf: 9.5} # e.g. {heldout.avg.final.chrf: 10.0}",
    ]
    # every other null keeps its spelling, and the file reads as before apart from the overridden values
    assert after.count(": null") == before.count(": null") - 2
    old, new = yaml.safe_load(before), yaml.safe_load(after)
    assert new["train"]["learning_rate"] == 2e-5 and isinstance(new["train"]["learning_rate"], float)
    old["train"].update(learning_rate=2e-5, epochs=2)
    old["train"]["lora"]["r"] = 8
    old["train"]["plan"]["shape"] = "profiles/shapes/llama3-8b.json"
    old["synthesize"]["system_prompt"] = "Answer: briefly"
    old["register"]["gate"]["min_scores"] = {"heldout.avg.final.chrf": 9.5}
    old["evaluate"]["server"]["models"] = {"final": "bayling"}
    assert new == old


def test_a_list_replacing_a_block_list_is_written_as_a_block_in_its_place(params_copy: Path):
    sources = [{"name": "mine", "format": "tsv", "uri": "data/sample/tico19/tico19.eng_Latn.txt", "columns": ["eng_Latn", "fra_Latn"]}]
    before = params_copy.read_text("utf-8")
    apply_overrides(params_copy, {"fetch.sources": sources})
    after = params_copy.read_text("utf-8")
    head, tail = before.split("  sources:\n", 1)[0], before.split("  s3_endpoint_url:", 1)[1]
    assert after == head + (
        "  sources:\n"
        "    - name: mine\n"
        "      format: tsv\n"
        "      uri: data/sample/tico19/tico19.eng_Latn.txt\n"
        "      columns:\n"
        "        - eng_Latn\n"
        "        - fra_Latn\n"
        "  s3_endpoint_url:") + tail


def test_strings_either_yaml_version_would_read_as_another_type_are_quoted(params_copy: Path):
    from bayling.config.yaml_text import Yaml12Loader

    # `0o17` is a string to YAML 1.1 (PyYAML writes it bare) and a number to YAML 1.2; `yes` the other way round
    apply_overrides(params_copy, {"register.model_name": "0o17", "tracking.experiment": "yes"})
    text = params_copy.read_text("utf-8")
    for loader in (yaml.SafeLoader, Yaml12Loader):
        params = yaml.load(text, Loader=loader)
        assert params["register"]["model_name"] == "0o17" and params["tracking"]["experiment"] == "yes"


def test_a_write_that_would_change_how_a_value_reads_is_refused(params_copy: Path, monkeypatch: pytest.MonkeyPatch):
    """The edited text is read back under YAML 1.1 (the stages' PyYAML) and 1.2 (DVC's) before it is written: a
    rendering that reads back as another value (here a writer that forgot to quote) is refused, the file untouched."""
    from bayling.config import yaml_text

    before = params_copy.read_bytes()
    monkeypatch.setattr(yaml_text, "flow_value", str)
    with pytest.raises(PipelineError, match=r"tracking\.experiment: cannot write .*YAML 1\.1.*unchanged"):
        apply_overrides(params_copy, {"tracking.experiment": "yes"})
    assert params_copy.read_bytes() == before


def test_blank_values_block_scalars_and_keys_at_a_sections_end_are_edited_in_place():
    """What an earlier writer left (`key:` with nothing after it) and what YAML's own end marks get wrong (a block scalar
    ends past its line breaks, an empty value at the next key)."""
    from bayling.config.overrides import edit_params_text

    text = ("base_model:\n  hf_id:                             # for source: hf\n  tiny:\n    seed: 0\n"
            "evaluate:\n  instructions:\nregister:\n  card:\n    intended_use: >-\n      Research on\n      translation.\n\n"
            "    tags: [a, b]\n")
    assert edit_params_text(text, [(["base_model", "hf_id"], "a/b"), (["evaluate", "comet_model"], "c"),
                                   (["register", "card", "intended_use"], "short"), (["base_model", "tiny", "seed"], 1)]) == (
        "base_model:\n  hf_id: a/b                         # for source: hf\n  tiny:\n    seed: 1\n"
        "evaluate:\n  instructions:\n  comet_model: c\nregister:\n  card:\n    intended_use: short\n\n"
        "    tags: [a, b]\n")


def test_a_mapping_that_names_every_key_of_a_section_may_replace_it(params_copy: Path):
    rule = {"metric": "chrf_pp", "points": 0.5, "alpha": 0.01}
    apply_overrides(params_copy, {"register.gate.max_drop_vs_base": rule})
    assert yaml.safe_load(params_copy.read_text("utf-8"))["register"]["gate"]["max_drop_vs_base"] == rule
