"""`register`: the registered model's name and aliases, the promotion gate, the approval step and the model card."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from bayling.config.types import PositiveInt, Section, UnitFloat

Alias = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]


class DropRule(Section):
    metric: Literal["bleu", "chrf", "chrf_pp"] = "chrf"
    points: Annotated[float, Field(ge=0)] = 1.0  # a larger drop in any direction fails the gate...
    alpha: UnitFloat = 0.05  # ...when the paired bootstrap says it is significant at this level


class BaseDropRule(DropRule):
    """No significant drop below the base model on the headline test set, per direction and on the average."""

    metric: Literal["bleu", "chrf", "chrf_pp"] = "chrf_pp"
    points: Annotated[float, Field(ge=0)] = 0.0  # any significant drop fails


class GateParams(Section):
    min_scores: dict[str, float] = {}  # metrics.json key -> minimum, e.g. {heldout.avg.final.chrf: 10}
    required_test_sets: list[str] = []
    max_drop_vs_champion: DropRule | None = DropRule()
    # fine-tuning must not leave the model significantly worse than where it started; null turns the rule off
    max_drop_vs_base: BaseDropRule | None = BaseDropRule()


class ApprovalParams(Section):
    required: bool = True  # pause the flow for a human decision (needs a Prefect server; see README)
    timeout_s: PositiveInt = 7 * 24 * 3600
    separation_of_duties: bool = False  # the identity that registered a version may not decide on it
    # rejecting the version that holds the champion alias: refuse, clear the alias, or give it back to the
    # version it displaced (cleared when there is none)
    reject_champion: Literal["refuse", "clear", "previous"] = "refuse"


class CardParams(Section):
    """What the Hugging Face model card (models/final/README.md) says beyond what the pipeline measured."""

    license: str | None = None  # a Hub license id; null: the base model's (known for SmolLM2 and Llama 2/3), else "other"
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
