"""`evaluate`: the test sets, decoding, and the optional comparisons (champion, COMET, XCOPA, lm-eval tasks, BayLing-80)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from bayling.config.types import Direction, EndpointParams, NonNegativeInt, PositiveInt, Section, archive_escape
from bayling.core.metric_keys import MODEL_LABELS, REPORT_NAMES

KeyPart = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]  # no dots: it is part of the metric keys


class EvalTestSet(Section):
    """A translation test set: the held-out split, WMT-style files, a FLORES-style folder, or a lexically
    constrained set (BayLing's JSONL: each row's terms must appear in its translation; scored for term usage too)."""

    name: KeyPart  # it leads the metric keys
    kind: Literal["heldout", "wmt", "flores", "constrained"]
    directions: Literal["all"] | Annotated[list[Direction], Field(min_length=1)] = "all"
    direction: Direction | None = None  # wmt, constrained: the one direction of the set
    src: str | None = None  # wmt: the source file; constrained: the JSONL of {"src", "tgt", "constraint": [terms]}
    refs: list[str] = []  # wmt: one or more references, used in this order
    dir: str | None = None  # flores: folder with one file per language (inside `archive`, when given)
    archive: str | None = None  # flores: a .tar.gz holding `dir`, unpacked into .cache/unpacked (FLORES is not re-hosted as text)
    pattern: str = "{code}.devtest"  # flores: file name for a FLORES-200 code
    max_segments: PositiveInt | None = None
    instruction_language: Literal["en", "zh"] = "en"
    system_prompt: str | None = None
    reference_systems: dict[KeyPart, dict[Direction, str]] = {}  # outputs of other systems, for capability ratios

    @model_validator(mode="after")
    def _names(self) -> EvalTestSet:
        if self.name in REPORT_NAMES:
            raise ValueError(f"test set name '{self.name}' is taken by metrics.json's own {self.name}.* keys")
        for system in self.reference_systems:
            if system in MODEL_LABELS or system.startswith("ratio_vs_"):
                raise ValueError(f"reference system '{system}' would share metrics.json keys with the model label '{system}' "
                                 f"({self.name}.<direction>.{system}.<metric>): choose another name")
        return self

    @model_validator(mode="after")
    def _kind_fields(self) -> EvalTestSet:
        if self.kind == "wmt" and not (self.direction and self.src and self.refs):
            raise ValueError("a wmt test set needs direction, src and refs")
        if self.kind == "flores" and (not self.dir or self.directions == "all"):
            raise ValueError("a flores test set needs dir and a list of directions")
        if self.kind == "constrained":
            if not (self.direction and self.src):
                raise ValueError("a constrained test set needs direction and src (a JSONL file of rows "
                                 '{"src": ..., "tgt": ..., "constraint": [terms]})')
            misplaced = [f for f in ("refs", "dir", "archive", "directions") if f in self.model_fields_set]
            if misplaced:
                raise ValueError(f"a constrained test set has one direction (direction) and one file (src), whose rows hold "
                                 f"the references and terms: remove {', '.join(misplaced)}")
        if "{code}" not in self.pattern:
            raise ValueError("pattern must contain {code}")
        if self.archive:  # a test set inside an archive reads nothing outside it
            for field, path in (("dir", self.dir or ""), ("pattern", self.pattern)):
                if problem := archive_escape(field, path, self.archive):
                    raise ValueError(problem)
        return self


class ChoiceFields(Section):
    """Where a multiple-choice JSONL row keeps its parts (defaults: lm-eval's processed documents)."""

    context: str = "query"  # the text the choices continue (lm-eval's doc_to_text), used as it is
    choices: str = "choices"  # a list of strings (doc_to_choice)
    gold: str = "gold"  # an index into the choices, or the text of the right one (doc_to_target)


class XcopaParams(Section):
    """Log-likelihood multiple choice scored as lm-evaluation-harness does (acc and acc_norm): XCOPA rows
    (format: xcopa), or any lm-eval-style multiple-choice JSONL (format: jsonl, see `fields`)."""

    name: KeyPart = "xcopa"  # leads the metric keys: {name}.{language}.{model}.acc / .acc_norm
    format: Literal["xcopa", "jsonl"] = "xcopa"
    dir: str  # the folder `pattern` is relative to
    languages: Annotated[list[KeyPart], Field(min_length=1)]  # the subsets: one file and one score each
    split: KeyPart = "test"  # XCOPA's are val and test
    pattern: str = "{lang}/{split}.{lang}.jsonl"  # the file of a subset, with {lang} and {split}
    max_items: PositiveInt | None = None
    fields: ChoiceFields = ChoiceFields()  # format: jsonl
    target_delimiter: str = " "  # between context and choice, as lm-eval's default
    add_bos: bool | None = None  # null: the tokenizer's default, as lm-eval >= 0.4.9.2; false: as lm-eval <= 0.4.9.1
    length_normalized: bool = False  # gone: `accuracy` (acc) and `acc_norm` are both reported; true is refused

    @model_validator(mode="after")
    def _files(self) -> XcopaParams:
        if self.name in REPORT_NAMES:
            raise ValueError(f"multiple-choice set name '{self.name}' is taken by metrics.json's own {self.name}.* keys")
        if self.length_normalized:
            raise ValueError("length_normalized is gone: {name}.{lang}.{model}.acc_norm is lm-eval's length-normalised "
                             "accuracy, reported beside .acc; read that key and remove length_normalized")
        if "avg" in self.languages:
            raise ValueError("'avg' cannot be a language: {name}.avg.* holds the average over the languages")
        try:
            names = {self.pattern.format(lang=lang, split=self.split) for lang in self.languages}
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"pattern may use only {{lang}} and {{split}}: {exc}") from None
        if len(names) != len(self.languages):
            raise ValueError("pattern must tell the languages' files apart (use {lang}) and languages be unique")
        if self.format == "xcopa" and "fields" in self.model_fields_set:
            raise ValueError("fields are for format: jsonl (XCOPA rows have premise, choice1, choice2, question, label)")
        return self


def _unique_names(sets: list[XcopaParams]) -> list[XcopaParams]:
    if len({s.name for s in sets}) != len(sets):
        raise ValueError("multiple-choice set names must be unique")
    return sets


# one set, or several (XCOPA and other lm-eval-style multiple-choice sets)
ChoiceSets = XcopaParams | Annotated[list[XcopaParams], Field(min_length=1), AfterValidator(_unique_names)]


def _metric_name(value: str) -> str:
    metric, _, filter_name = value.partition(",")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", metric) or (filter_name and not re.fullmatch(r"[A-Za-z0-9_-]+", filter_name)):
        raise ValueError(f"'{value}' is not an lm-eval metric: a name such as acc, or 'name,filter' such as "
                         "exact_match,flexible-extract")
    return value


class UnderstandingTasks(Section):
    """lm-evaluation-harness tasks run on the model under evaluation (bayling/evaluate/understanding.py), by lm-eval's
    own names: a group, single tasks, or {language: task}. Keys: {name}.{language}.{model}.{metric}."""

    name: KeyPart  # leads the metric keys
    # a list: each task or group's language is its name after "{name}_" (xcopa_sw: sw); a mapping names them
    tasks: Annotated[list[str], Field(min_length=1)] | Annotated[dict[KeyPart, str], Field(min_length=1)]
    num_fewshot: NonNegativeInt | None = None  # null: the task's own default
    limit: PositiveInt | None = None  # the first documents of each task; null: all
    metrics: Annotated[list[Annotated[str, AfterValidator(_metric_name)]], Field(min_length=1)] = ["acc", "acc_norm"]
    include_path: str | None = None  # a folder of task YAMLs (local copies of lm-eval's tasks), e.g. lm_eval_tasks/xcopa
    data_dir: str | None = None  # where those YAMLs' relative data_files start (lm-eval runs there); null: the project root
    offline: bool = True  # the Hugging Face Hub off (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE): the tasks read local files
    batch_size: PositiveInt | None = None  # null: evaluate.batch_size

    @model_validator(mode="after")
    def _languages(self) -> UnderstandingTasks:
        if self.name in REPORT_NAMES:
            raise ValueError(f"understanding task name '{self.name}' is taken by metrics.json's own {self.name}.* keys")
        languages = list(self.languages())
        if "avg" in languages:
            raise ValueError("'avg' cannot be a language: {name}.avg.* holds the average over the languages")
        for lang in languages:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", lang):
                raise ValueError(f"the language part '{lang}' cannot lead a metric key part (letters, digits, _ and - only): "
                                 "name the languages with a mapping {language: task}")
        if len(set(languages)) != len(languages) or len(set(self.languages().values())) != len(languages):
            raise ValueError("each task and each language may appear once")
        return self

    def languages(self) -> dict[str, str]:
        """{language: lm-eval task or group name}."""
        if isinstance(self.tasks, dict):
            return dict(self.tasks)
        prefix = f"{self.name}_"
        out = {}
        for task in self.tasks:
            if not task.startswith(prefix) or task == prefix:
                raise ValueError(f"task '{task}' does not start with '{prefix}': its language cannot be read from its name; "
                                 f"give tasks as a mapping {{language: task}}")
            out[task[len(prefix):]] = task
        return out


def _unique_understanding(entries: list[UnderstandingTasks]) -> list[UnderstandingTasks]:
    if len({e.name for e in entries}) != len(entries):
        raise ValueError("understanding names must be unique")
    return entries


class JudgeParams(EndpointParams):
    """An LLM judge behind an OpenAI-compatible endpoint (same client and cache as the synthesis teacher)."""

    reference: str = "base"  # "base": the base model's answers; or a JSONL of another system's answers
    cache_path: str = ".cache/judge.sqlite"
    max_tokens: PositiveInt = 512


class InstructionEvalParams(Section):
    paths: Annotated[list[str], Field(min_length=1)]  # BayLing-80-style JSONL: {"question_id", "text": str | [turns]}
    max_questions: PositiveInt | None = None
    max_new_tokens: PositiveInt = 256
    judge: JudgeParams = JudgeParams()


class ServedEvalParams(Section):
    """An OpenAI-compatible server that generates evaluate's replies (evaluate.engine: openai)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = None  # the *name* of the variable holding the key, if the server wants one
    # the name the server knows each model by; absent: the model folder's absolute path (what `transformers serve`
    # loads on demand, and what `vllm serve <abs path>` is called)
    models: dict[Literal["final", "base"], str] = {}
    base_urls: dict[Literal["final", "base"], str] = {}  # a model served elsewhere (vLLM serves one model per server)
    max_concurrency: PositiveInt | None = None  # requests in flight; null: evaluate.batch_size
    timeout_s: Annotated[float, Field(gt=0)] = 600.0
    max_retries: NonNegativeInt = 2


class BudgetParams(Section):
    """Each prompt's token budget, from its source's length (bayling/evaluate/budgets.py)."""

    per_source_token: Annotated[float, Field(gt=0)] = 1.75  # times the source's tokens, scaled to the target language
    extra: NonNegativeInt = 16
    corpus: str = "data/raw/corpus.jsonl"  # where each language's tokens per segment against English's are measured


class EvaluateParams(Section):
    test_sets: Annotated[list[EvalTestSet], Field(min_length=1)] = [EvalTestSet(name="heldout", kind="heldout", max_segments=8)]
    # hf: generate on the weights in this process; openai: an OpenAI-compatible server (vLLM, TGI, SGLang, transformers serve)
    engine: Literal["hf", "openai"] = "hf"
    server: ServedEvalParams = ServedEvalParams()
    batch_size: PositiveInt = 96
    max_new_tokens: PositiveInt = 256  # the most any row may generate; with a budget, each row stops at its own
    budget: BudgetParams | None = BudgetParams()  # null: every row gets max_new_tokens
    # a row caught repeating a unit of tokens stops, and the loop is written on to its limit (hf engine, greedy)
    stop_loops: bool = True
    # a batch whose rows still going fall to this share of it stops, and they carry on in a later batch with the rows
    # other batches left (hf engine, greedy; bayling/models/generation.py Regroup); 0: every batch runs to its last row
    regroup_below: Annotated[float, Field(ge=0, lt=1)] = 0.0625
    # the weights' dtype: auto is bf16 where bf16 runs natively (a GPU that has it, a CPU with AVX512-BF16 or AMX),
    # else fp32; bf16 changes some greedy outputs (benchmarks/README.md measures what that does to the scores)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # outputs of a model nobody changed (the base model, a champion) are remembered here between runs; null: off
    generation_cache: str | None = ".cache/generations"
    num_beams: PositiveInt = 1
    evaluate_base: bool = True
    seed: int = 0
    comet_model: str | None = None  # a local COMET checkpoint; skipped (and said so) when absent
    compare_with_champion: bool = True  # paired bootstrap against the predictions stored with register.champion_alias
    bootstrap_samples: PositiveInt = 1000
    xcopa: ChoiceSets | None = None  # multiple-choice understanding sets (XCOPA and any lm-eval-style JSONL)
    # lm-evaluation-harness tasks by name (belebele_*, xnli_*, global_mmlu_*, mmlu...), through lm-eval itself
    understanding: Annotated[list[UnderstandingTasks], Field(min_length=1), AfterValidator(_unique_understanding)] | None = None
    instructions: InstructionEvalParams | None = None

    @model_validator(mode="after")
    def _unique(self) -> EvaluateParams:
        names = [t.name for t in self.test_sets]
        if len(set(names)) != len(names):
            raise ValueError("test set names must be unique")
        choice_sets = self.xcopa if isinstance(self.xcopa, list) else [self.xcopa] if self.xcopa else []
        for shared in sorted({s.name for s in choice_sets} & set(names)):
            raise ValueError(f"'{shared}' names both a translation test set and a multiple-choice set: both lead their "
                             "metrics.json keys, so give them different names")
        for entry in self.understanding or []:
            if entry.name in names or entry.name in {s.name for s in choice_sets}:
                raise ValueError(f"'{entry.name}' names both an understanding entry and a test set or multiple-choice set: "
                                 "both lead their metrics.json keys, so give them different names")
        return self

    def choice_sets(self) -> list[XcopaParams]:
        """The native multiple-choice sets, as a list."""
        return self.xcopa if isinstance(self.xcopa, list) else [self.xcopa] if self.xcopa else []
