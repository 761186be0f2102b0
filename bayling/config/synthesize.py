"""`synthesize`: the instruction recipe (translation, interactive follow-ups, general chats), filters,
decontamination, the teacher, the mix and how shards run."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from bayling.config.types import Direction, EndpointParams, LangCode, PositiveInt, Section, Slug, UnitFloat, archive_escape

# The interactive-translation follow-up tasks params may weigh (bayling.synthesize.followups implements
# exactly these). Nine derive their reply from the multi-parallel data; the last three need the teacher.
DATA_TASKS = (
    "pivot", "back_translate", "constrained", "length_limit", "correct_draft", "translate_list",
    "compare_candidates", "multi_target", "identify_language",
)
TEACHER_TASKS = ("change_register", "explain_word_choice", "shorten")
INTERACTIVE_TASKS = DATA_TASKS + TEACHER_TASKS

# BayLing 2's mix of 3.2M instructions (arXiv 2411.16300): 43.2% Chinese, 26.2% English, 30.6% cross-lingual.
BAYLING2_MIX: dict[str, dict[Literal["zh", "en", "cross", "other"], float]] = {
    "any": {"zh": 0.432, "en": 0.262, "cross": 0.306}
}


class InteractiveParams(Section):
    """BayLing 1 interactive translation: a translation request followed by follow-up tasks."""

    per_row: Annotated[int, Field(ge=0)] = 1
    max_followups: PositiveInt = 3
    task_weights: dict[str, Annotated[float, Field(ge=0)]] = {}

    @model_validator(mode="after")
    def _known_tasks(self) -> InteractiveParams:
        unknown = sorted(set(self.task_weights) - set(INTERACTIVE_TASKS))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(INTERACTIVE_TASKS)}")
        return self

    def weights(self) -> dict[str, float]:
        return {name: self.task_weights.get(name, 1.0) for name in INTERACTIVE_TASKS}


class GeneralSourceParams(Section):
    name: Slug
    path: str
    language: LangCode
    # sources in one parallel group hold versions of the same chats in other languages, matched by their `id`
    # (the line number where a chat has none); chats of sources outside a group are never paired
    parallel_group: Slug | None = None


class GeneralParams(Section):
    """BayLing 2 general instruction data in `messages` JSONL, carried across languages."""

    sources: list[GeneralSourceParams] = []
    cross_lingual_targets: list[LangCode] = []  # answer languages the teacher carries replies into

    @model_validator(mode="after")
    def _names_and_groups(self) -> GeneralParams:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("general source names must be unique: they prefix the chats' ids")
        seen: dict[tuple[str, str], str] = {}
        for source in self.sources:
            if source.parallel_group is None:
                continue
            key = (source.parallel_group, source.language)
            if key in seen:
                raise ValueError(f"parallel group {source.parallel_group} has two {source.language} sources ({seen[key]} and "
                                 f"{source.name}): a group holds one version of each chat per language")
            seen[key] = source.name
        return self


class FilterParams(Section):
    dedupe: Literal["off", "exact", "normalized"] = "normalized"
    min_script_share: UnitFloat = 0.5  # 0 turns the script check off
    max_length_ratio: Annotated[float, Field(ge=1)] = 3.0
    langid: bool = False
    langid_min_probability: UnitFloat = 0.9
    # langid.py ships its model; fasttext (lid.176) and glotlid need a local fastText .bin in langid_model_path.
    # FLORES codes map to each backend's labels in bayling/synthesize/resources/langid_labels.tsv.
    langid_backend: Literal["langid", "fasttext", "glotlid"] = "langid"
    langid_model_path: str | None = None

    @model_validator(mode="after")
    def _langid_model(self) -> FilterParams:
        if self.langid_backend == "langid" and self.langid_model_path:
            raise ValueError("langid_model_path is for langid_backend fasttext or glotlid; langid.py ships its own model")
        if self.langid_backend != "langid" and not self.langid_model_path:
            raise ValueError(f"langid_backend {self.langid_backend} needs langid_model_path (a local fastText .bin model)")
        return self


class ExtraSetParams(Section):
    """A set to decontaminate against that is not one of evaluate.test_sets: files of lines or of JSON rows."""

    name: Slug
    format: Literal["lines", "jsonl"]
    paths: Annotated[list[str], Field(min_length=1)]  # globs, inside `archive` when given
    archive: str | None = None  # a .tar.gz unpacked on demand into .cache/unpacked
    fields: list[str] = ["text", "messages", "prompt", "question", "instruction"]

    @model_validator(mode="after")
    def _inside_archive(self) -> ExtraSetParams:
        for i, path in enumerate(self.paths if self.archive else []):
            if problem := archive_escape(f"paths[{i}]", path, self.archive):
                raise ValueError(problem)
        return self


class DecontaminationParams(Section):
    ngram: PositiveInt = 13
    # names of file-based evaluate.test_sets: every segment of their files, whatever max_segments evaluates
    # (bayling.config.loader checks the names against evaluate.test_sets)
    against: list[str] = []
    extra: list[ExtraSetParams] = []

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict) and "eval_sets" in data:
            raise ValueError("eval_sets was replaced: name evaluate.test_sets in `against` (e.g. against: [flores]), "
                             "and describe any other set, in the same form as before, under `extra`")
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> DecontaminationParams:
        names = [*self.against, *(s.name for s in self.extra)]
        if len(set(names)) != len(names):
            raise ValueError("decontamination set names must be unique: the data card counts removed text per set name")
        return self


class TeacherParams(EndpointParams):
    """An optional LLM that writes the replies the data cannot give."""


class MixParams(Section):
    # downsample: keep the largest total every cell can supply; resample: cells may also repeat their rows
    # (up to max_repeat); report: keep everything
    mode: Literal["downsample", "resample", "report"] = "downsample"
    ratios: dict[str, dict[Literal["zh", "en", "cross", "other"], Annotated[float, Field(ge=0)]]] = BAYLING2_MIX
    # languages inside a cell get shares proportional to n^(1/T): 1 keeps the data's shares, .inf makes them equal
    temperature: Annotated[float, Field(ge=1, allow_inf_nan=True)] = 1.0
    max_repeat: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 4.0  # most copies of a language's (or a cell's) rows
    # what the shares are shares of: supervised tokens (the assistant tokens the loss is computed on, counted with the
    # base model's tokenizer) or conversations (BayLing 2's instruction counts)
    unit: Literal["supervised_tokens", "conversations"] = "supervised_tokens"

    @model_validator(mode="after")
    def _families(self) -> MixParams:
        unknown = sorted(set(self.ratios) - {"any", "translation", "interactive", "general"})
        if unknown:
            raise ValueError(f"unknown task family {unknown}; use any, translation, interactive or general")
        if not any(w > 0 for groups in self.ratios.values() for w in groups.values()):
            raise ValueError("at least one mix ratio must be positive")
        return self


class DaskParams(Section):
    enabled: bool = False
    address: str | None = None  # a running cluster's scheduler; None starts a LocalCluster
    n_workers: PositiveInt = 2


class SynthesizeParams(Section):
    seed: int = 0
    heldout_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    directions: Literal["all"] | Annotated[list[Direction], Field(min_length=1)] = "all"
    instruction_languages: dict[Literal["en", "zh", "source"], Annotated[float, Field(ge=0)]] = {"en": 1.0}
    system_prompt: str | None = None
    interactive: InteractiveParams = InteractiveParams()
    general: GeneralParams = GeneralParams()
    filters: FilterParams = FilterParams()
    decontamination: DecontaminationParams = DecontaminationParams()
    teacher: TeacherParams = TeacherParams()
    mix: MixParams = MixParams()
    shard_size: PositiveInt = 2000
    dask: DaskParams = DaskParams()

    @model_validator(mode="after")
    def _weights(self) -> SynthesizeParams:
        if not any(w > 0 for w in self.instruction_languages.values()):
            raise ValueError("instruction_languages needs at least one positive weight")
        if self.general.cross_lingual_targets and not self.teacher.enabled:
            raise ValueError("general.cross_lingual_targets needs teacher.enabled: true")
        return self

    def allowed_directions(self) -> list[str] | None:
        return None if self.directions == "all" else list(self.directions)
