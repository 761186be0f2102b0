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
    assert kinds == {"heldout", "wmt", "flores"}
    assert merged["evaluate"]["xcopa"]["languages"] and merged["evaluate"]["instructions"]["judge"]["enabled"]


@pytest.mark.parametrize("profile", PAPER, ids=lambda p: p.stem)
def test_the_profiles_layout_is_what_the_plan_recommends(profile: Path, tmp_path: Path):
    from bayling.config.loader import validate_sections
    from bayling.train.plan import plan_for, recommended

    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")  # a checkout with no models/ and no reports/
    merged = merged_params(ROOT / "params.yaml", profile)
    sections = validate_sections(merged, ["train", "base_model", "tokenize"], root=tmp_path)
    train, base_model, tokenize = sections["train"], sections["base_model"], sections["tokenize"]
    plan = plan_for(train, base_model, tokenize.max_seq_len, tmp_path, check=True)
    assert plan.fits and plan.epoch_hours and plan.epoch_hours > 0
    assert "this is the recommended layout" in " ".join(plan.notes)
    assert plan.shape.parameters > 6e9
    # and two nodes keep a layout that fits at the same global batch
    two_nodes = train.model_copy(update={"num_nodes": 2, "gradient_accumulation_steps": train.gradient_accumulation_steps // 2})
    from bayling.train.plan import model_config

    config = model_config(base_model, tmp_path, train.plan.shape)
    best = recommended(config, two_nodes, tokenize.max_seq_len, gpu_memory_gib=80, peak_tflops=989.4, mfu=0.4)
    assert best is not None and best[1].fits


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
    assert "Traceback" not in done.stderr and params.read_bytes() == before
