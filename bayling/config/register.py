"""`register`: the registered model's name and aliases, the promotion gate, the approval step and the model card."""

from __future__ import annotations

import functools
import re
from difflib import get_close_matches
from importlib import resources
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from bayling.config.types import PositiveInt, Section, UnitFloat

Alias = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]

HUB_LICENSES_URL = "https://huggingface.co/docs/hub/repositories-licenses"


@functools.cache
def hub_license_ids() -> frozenset[str]:
    """The license ids the Hugging Face Hub accepts, as bayling/core/resources/hub_licenses.tsv keeps them."""
    text = resources.files("bayling.core.resources").joinpath("hub_licenses.tsv").read_text("utf-8")
    return frozenset(line.split("\t", 1)[0] for line in text.splitlines() if line.strip() and not line.startswith("#"))


def _check_license(value: str) -> str:
    ids = hub_license_ids()
    if value not in ids:
        close = get_close_matches(value.lower(), sorted(ids), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"'{value}' is not a license id the Hugging Face Hub knows{hint} (the list: {HUB_LICENSES_URL}, kept in "
                         "bayling/core/resources/hub_licenses.tsv); for a license not on it, use other with license_name and license_link")
    return value


def _check_license_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", value):
        raise ValueError(f"'{value}' must be short, lowercase, without spaces (like my-license-1.0), as the Hub asks of license_name")
    return value


def _check_license_link(value: str) -> str:
    # the Hub takes a URL, or the name of a file inside the model's own folder (LICENSE, LICENSE.md)
    if re.fullmatch(r"https?://\S+", value):
        return value
    relative = PurePosixPath(value)
    if not value.strip() or relative.is_absolute() or ".." in relative.parts or "://" in value:
        raise ValueError(f"'{value}' must be an http(s) URL to the license text, or a file inside the model's folder such as LICENSE")
    return value


class DropRule(Section):
    metric: Literal["bleu", "chrf", "chrf_pp"] = "chrf"
    points: Annotated[float, Field(ge=0)] = 1.0  # a larger drop in any direction fails the gate...
    alpha: UnitFloat = 0.05  # ...when the paired bootstrap says it is significant at this level


class BaseDropRule(DropRule):
    """No significant drop below the base model on the headline test set, per direction and on the average."""

    metric: Literal["bleu", "chrf", "chrf_pp"] = "chrf_pp"
    points: Annotated[float, Field(ge=0)] = 0.0  # any significant drop fails


class UnderstandingDropRule(Section):
    """No significant drop on named understanding tasks (evaluate.understanding and evaluate.xcopa names), per
    language and on the pooled documents, by the paired test on per-document correctness (exact McNemar)."""

    tasks: Annotated[list[str], Field(min_length=1)]
    metric: str = "acc"  # as in the metric keys: acc, acc_norm, exact_match_flexible-extract...
    alpha: UnitFloat = 0.05  # Holm-adjusted over each task's languages and its average
    against: Annotated[list[Literal["base", "champion"]], Field(min_length=1)] = ["base", "champion"]


class GateParams(Section):
    min_scores: dict[str, float] = {}  # metrics.json key -> minimum, e.g. {heldout.avg.final.chrf: 10}
    required_test_sets: list[str] = []
    max_drop_vs_champion: DropRule | None = DropRule()
    # fine-tuning must not leave the model significantly worse than where it started; null turns the rule off
    max_drop_vs_base: BaseDropRule | None = BaseDropRule()
    understanding: UnderstandingDropRule | None = None  # e.g. {tasks: [xcopa, belebele], metric: acc}


class ApprovalParams(Section):
    required: bool = True  # pause the flow for a human decision (needs a Prefect server; see README)
    timeout_s: PositiveInt = 7 * 24 * 3600
    separation_of_duties: bool = False  # the identity that registered a version may not decide on it
    # rejecting the version that holds the champion alias: refuse, clear the alias, or give it back to the
    # version it displaced (cleared when there is none)
    reject_champion: Literal["refuse", "clear", "previous"] = "refuse"


class CardParams(Section):
    """What the Hugging Face model card (models/final/README.md) says beyond what the pipeline measured."""

    # a Hub license id (HUB_LICENSES_URL); null: the base model's (known for SmolLM2 and Llama 2/3), else "other"
    license: Annotated[str, AfterValidator(_check_license)] | None = None
    # license: other only, both required then: a short lowercase id for it, and a URL (or a file in the model's folder)
    license_name: Annotated[str, AfterValidator(_check_license_name)] | None = None
    license_link: Annotated[str, AfterValidator(_check_license_link)] | None = None
    base_model: str | None = None  # the Hub id the card names; null: base_model.hf_id, or the packaged GGUF's upstream model
    datasets: list[str] = []  # Hub ids of the training data; empty: the names of fetch.sources and synthesize.general.sources
    tags: list[str] = ["translation", "bayling", "instruction-tuning", "multilingual"]
    intended_use: str = (
        "Research on carrying instruction following into other languages with translation-derived instructions "
        "(BayLing's recipe): translating between the languages listed here and following simple instructions in them."
    )
    limitations: str = (
        "Trained on a small sample with a short schedule: expect poor translations and hallucinations, and check every "
        "output. Scores come from a few segments per direction. Not for production, for safety-critical or medical "
        "translation, or for languages it was not trained on. Training data keeps its sources' licenses (see the data card)."
    )

    @model_validator(mode="after")
    def _other_license(self) -> CardParams:
        missing = [k for k in ("license_name", "license_link") if getattr(self, k) is None]
        if self.license == "other" and missing:
            raise ValueError(f"license: other needs license_name and license_link, as the Hub asks (missing: {', '.join(missing)}): "
                             "a short lowercase id for the license, and a URL to its text or a LICENSE file in the model's folder")
        if self.license != "other" and len(missing) < 2:
            raise ValueError(f"license_name and license_link go with license: other only, and license is {self.license or 'null'}: "
                             "drop them, or set license: other")
        return self


class RegisterParams(Section):
    model_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = "bayling-candidate"
    alias: Alias = "candidate"
    champion_alias: Alias = "champion"
    gate: GateParams = GateParams()
    approval: ApprovalParams = ApprovalParams()
    card: CardParams = CardParams()
    # the run summary warns, and reports/register.json records, when a mix cell's share of the supervised tokens
    # the train steps drew lies further than this (percentage points) from the share synthesize.mix requested
    mix_tolerance_points: Annotated[float, Field(ge=0)] = 3.0

    @model_validator(mode="after")
    def _aliases(self) -> RegisterParams:
        if self.alias == self.champion_alias:
            raise ValueError("register.alias and register.champion_alias must differ: register sets the alias on every "
                             "version that passes the gate, and only an approval may move the champion's")
        return self
