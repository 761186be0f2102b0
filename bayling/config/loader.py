"""Reading params.yaml and validating the sections a stage needs, every problem reported at once with its line.

Section schemas live one per module (bayling.config.<section>) and are imported only when validated,
so a stage depends on the schemas of its own sections and on nothing else: editing the register
schema does not make DVC re-run train.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bayling.config.types import Section
from bayling.core.errors import PipelineError

PARAMS_FILE = "params.yaml"

# section name -> (module, class): the schema of each top-level key of params.yaml.
SECTION_SCHEMAS: dict[str, tuple[str, str]] = {
    "base_model": ("bayling.config.base_model", "BaseModelParams"),
    "fetch": ("bayling.config.fetch", "FetchParams"),
    "synthesize": ("bayling.config.synthesize", "SynthesizeParams"),
    "tokenize": ("bayling.config.tokenize", "TokenizeParams"),
    "train": ("bayling.config.train", "TrainParams"),
    "evaluate": ("bayling.config.evaluate", "EvaluateParams"),
    "register": ("bayling.config.register", "RegisterParams"),
    "tracking": ("bayling.config.tracking", "TrackingParams"),
}
OPTIONAL_SECTIONS = ("tracking", "register")  # absent means all defaults


def schema(section: str) -> type[Section]:
    module, name = SECTION_SCHEMAS[section]
    return getattr(importlib.import_module(module), name)


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error (as DVC treats it), not
    a silent override by the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping (first on line {seen[key]})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, path: str | Path) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None


def read_params_file(path: str | Path = PARAMS_FILE) -> tuple[dict[str, Any], str]:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found (run from the project root)") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise PipelineError(f"{path}:{line}: not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    data = parse_yaml(text, path) or {}
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: top level must be a mapping of sections")
    return data, text


def _unknown_sections(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    import difflib

    problems = []
    for key in data:
        if key not in SECTION_SCHEMAS:
            close = difflib.get_close_matches(str(key), list(SECTION_SCHEMAS), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; sections are {', '.join(SECTION_SCHEMAS)}"
            problems.append(((key,), f"unknown section{hint}"))
    return problems


def _local_path_problems(section: str, model: Any, root: Path) -> list[tuple[tuple[Any, ...], str]]:
    """Checks that need the filesystem: local source files must exist before fetch starts."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    if section == "fetch":
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


def _cross_section_problems(models: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Settings of two sections that cannot work together, found before any stage runs."""
    evaluate, register, synthesize = models.get("evaluate"), models.get("register"), models.get("synthesize")
    problems: list[tuple[tuple[Any, ...], str]] = []
    if evaluate is not None and register is not None and not evaluate.evaluate_base and register.gate.max_drop_vs_base is not None:
        problems.append((("register", "gate", "max_drop_vs_base"),
                         "compares the fine-tuned model with its base, but evaluate.evaluate_base is false: evaluate the base "
                         "model, or set max_drop_vs_base: null to turn the rule off"))
    if evaluate is not None and synthesize is not None:
        problems.extend(_decontamination_problems(synthesize.decontamination.against, evaluate.test_sets))
    return problems


def _decontamination_problems(against: list[str], test_sets: list[Any]) -> list[tuple[tuple[Any, ...], str]]:
    """synthesize.decontamination.against names test sets of evaluate.test_sets that are files."""
    kinds = {t.name: t.kind for t in test_sets}
    problems: list[tuple[tuple[Any, ...], str]] = []
    for i, name in enumerate(against):
        where = ("synthesize", "decontamination", "against", i)
        if name not in kinds:
            problems.append((where, f"'{name}' is not a test set of evaluate.test_sets ({', '.join(kinds)}); name one of them, "
                                    "or describe a set that is not evaluated under synthesize.decontamination.extra"))
        elif kinds[name] == "heldout":
            problems.append((where, f"'{name}' is the held-out split synthesize itself makes, not a test set of files: name "
                                    "a FLORES-, WMT-style or constrained set"))
    return problems


def find_problems(
    data: dict[str, Any], sections: list[str], *, root: Path = Path(".")
) -> tuple[dict[str, Section], list[tuple[tuple[Any, ...], str]]]:
    """The named sections that validate, and every problem found as (location, message)."""
    problems: list[tuple[tuple[Any, ...], str]] = _unknown_sections(data)
    models: dict[str, Section] = {}
    for name in sections:
        cls = schema(name)
        raw = data.get(name, {} if name in OPTIONAL_SECTIONS else None)
        if raw is None:
            problems.append(((name,), "section is missing"))
            continue
        try:
            models[name] = cls.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_readable_errors(name, exc))
            continue
        problems.extend(_local_path_problems(name, models[name], root))
    problems.extend(_cross_section_problems(models))
    return models, problems


def validate_sections(
    data: dict[str, Any], sections: list[str], *, text: str = "", file: str = PARAMS_FILE, root: Path = Path(".")
) -> dict[str, Any]:
    """Validate the named sections; raise one PipelineError that lists every problem found."""
    models, problems = find_problems(data, sections, root=root)
    if problems:
        lines = _line_map(text) if text else {}
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


def load_all(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    data, text = read_params_file(path)
    return validate_sections(data, list(SECTION_SCHEMAS), text=text, file=str(path), root=Path(path).parent)


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
