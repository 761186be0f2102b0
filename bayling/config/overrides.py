"""Changing params without editing params.yaml by hand: profiles (a YAML file merged over params.yaml, mappings
merge and everything else replaces) and `-S section.key=value` overrides, as `dvc exp run -S` has them.

Both check the merged params against the section schemas before anything is written, so a refused change leaves
params.yaml byte for byte as it was. The write edits the file's text where the changed values stand: every other
byte (comments, `null`, indentation, line breaks inside flow lists) stays, and the result is read back before it
is written, under YAML 1.1 (the stages' PyYAML) and YAML 1.2 (DVC's ruamel.yaml), to prove that only the changed
values read differently. The text itself is read and edited in bayling.config.yaml_text.
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bayling.config.loader import SECTION_SCHEMAS, _format_loc, _readable_errors, find_problems, read_params_file, schema
from bayling.config.yaml_text import Yaml12Loader, canonical, edit_value, flow_value, parse_value, write_params_text
from bayling.core.errors import PipelineError

Change = tuple[list[str], Any]  # a key path in params.yaml and the value it gets


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def profile_changes(base: Mapping[str, Any], profile: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[Change]:
    """The values `merge(base, profile)` replaces, one change each (a mapping over a mapping is merged key by key)."""
    changes: list[Change] = []
    for key, value in profile.items():
        path = [*prefix, str(key)]
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            changes += profile_changes(base[key], value, tuple(path))
        else:
            changes.append((path, value))
    return changes


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.max_steps=10' -> (['train', 'max_steps'], 10); the value is read as YAML 1.2 reads it, as DVC does."""
    if "=" not in text:
        raise PipelineError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if len(path) < 2:
        raise PipelineError(f"override '{text}': name a section and a key, e.g. train.max_steps=10")
    try:
        return path, parse_value(raw)
    except PipelineError as exc:
        raise PipelineError(f"override '{text}': the value is {exc}") from None


def with_changes(data: dict[str, Any], changes: list[Change]) -> tuple[dict[str, Any], list[str]]:
    """`data` with each change made (missing mappings on the way created, as dvc exp run -S does), and the problems
    that no schema check can see: a path through a value that is no mapping, a mapping that would replace a section."""
    out, problems = copy.deepcopy(data), []
    for path, value in changes:
        node = out
        for depth, part in enumerate(path[:-1]):
            if part not in node:
                node[part] = {}
            elif not isinstance(node[part], dict):
                where = ".".join(path[: depth + 1])
                problems.append(f"{where} is not a mapping (it is {flow_value(node[part])}), so it has no key '{path[depth + 1]}'")
                break
            node = node[part]
        else:
            old, key = node.get(path[-1]), ".".join(path)
            dropped = [str(k) for k in old if k not in value] if isinstance(value, dict) and isinstance(old, dict) else []
            if dropped and value and _section_at(path) is not None:
                first, example = next(iter(value.items()))
                problems.append(f"{key} is a section, and a mapping replaces all of it: {', '.join(dropped)} would fall back to "
                                f"their defaults; set its keys one at a time: -S {key}.{first}={flow_value(example)}")
            node[path[-1]] = copy.deepcopy(value)
    return out, problems


def edit_params_text(text: str, changes: list[Change]) -> str:
    """params.yaml's text with each change written where its value stands, everything else byte for byte as it was.

    Refuses (PipelineError) a result that would read differently anywhere but the changed values, under either YAML
    version that reads this file: PyYAML's 1.1 in the stages, ruamel.yaml's 1.2 in DVC."""
    new = text
    for i, (path, value) in enumerate(changes):
        new = edit_value(new, path, value)
        for loader, version in ((yaml.SafeLoader, "1.1, as the stages read it"), (Yaml12Loader, "1.2, as DVC reads it")):
            expected = with_changes(yaml.load(text, Loader=loader) or {}, changes[: i + 1])[0]  # noqa: S506 - safe loaders
            if canonical(yaml.load(new, Loader=loader)) != canonical(expected):  # noqa: S506
                raise PipelineError(f"{'.'.join(path)}: cannot write {flow_value(value)} in place so that YAML {version} reads back "
                                    "the same values; edit params.yaml by hand")
    return new


# --- checking overrides against the section schemas --------------------------------------------------------------------


def _section_class(annotation: Any) -> type[BaseModel] | None:
    """The one schema class an annotation admits (`X`, `X | None`, `Annotated[X, ...]`), else None."""
    found, stack = [], [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            found.append(current)
        elif typing.get_origin(current) is typing.Annotated:
            stack.append(typing.get_args(current)[0])
        elif typing.get_origin(current) in (typing.Union, types.UnionType):
            stack.extend(typing.get_args(current))
    return found[0] if len(found) == 1 else None


def _section_at(path: list[str]) -> type[BaseModel] | None:
    """The schema of the value at `path`, where that value is a section of its own (train, train.lora, register.gate);
    None for a free-form mapping (register.gate.min_scores), a list, a plain value or a key no schema has."""
    if path[0] not in SECTION_SCHEMAS:
        return None
    model: type[BaseModel] | None = schema(path[0])
    for part in path[1:]:
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _section_class(field.annotation)
    return model


def _unknown_key_hint(loc: tuple[Any, ...]) -> str:
    parent = _section_at([str(p) for p in loc[:-1]])
    if parent is None:
        return ""
    keys = list(parent.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f"; {_format_loc(loc[:-1])} has {', '.join(keys)}"


def _schema_problems(path: list[str], value: Any) -> list[str]:
    """What a section's schema alone says of one override, with the rest of the section left at its defaults: an
    unknown section or key, a value of the wrong type or out of range. Rules across keys need the whole file."""
    if path[0] not in SECTION_SCHEMAS:
        close = difflib.get_close_matches(path[0], list(SECTION_SCHEMAS), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else f"; sections are {', '.join(SECTION_SCHEMAS)}"
        return [f"unknown section '{path[0]}'{hint}"]
    nested = value
    for part in reversed(path[1:]):
        nested = {part: nested}
    try:
        schema(path[0]).model_validate(nested)
    except ValidationError as exc:
        problems = []
        for loc, msg in _readable_errors(path[0], exc):
            if tuple(str(p) for p in loc[: len(path)]) != tuple(path):
                continue  # about another key left at its default, or a rule across keys: the whole file decides
            where = "" if len(loc) == len(path) else f"{_format_loc(loc)}: "
            problems.append(where + msg + (_unknown_key_hint(loc) if msg == "unknown key" else ""))
        return problems
    return []


def _describe(path: list[str], value: Any) -> str:
    shown = flow_value(value)
    return f"-S {'.'.join(path)}={shown if len(shown) <= 60 else shown[:57] + '...'}"


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Refuse overrides the section schemas refuse on their own, before any params.yaml is read (flows.reproduce
    checks them so before it clones anything). One line, naming each key."""
    problems = [f"{_describe(key.split('.'), value)}: {problem}"
                for key, value in overrides.items() for problem in _schema_problems(key.split("."), value)]
    if problems:
        raise PipelineError("; ".join(problems))


def apply_overrides(params_file: Path, overrides: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Write `section.key: value` overrides into params.yaml in place (as dvc exp run -S does), after checking every
    section of the result; returns the merged params. A refused override raises PipelineError and leaves the file
    byte for byte as it was; `dry_run` checks without writing."""
    if not overrides:
        return read_params_file(params_file)[0]
    changes = [(key.split("."), value) for key, value in overrides.items()]
    try:
        check_overrides(overrides)
        data, text = read_params_file(params_file)
        merged, problems = with_changes(data, changes)
        if not problems:
            problems = [f"{_format_loc(loc)}: {msg}" for loc, msg in
                        find_problems(merged, list(SECTION_SCHEMAS), root=params_file.parent)[1]]
            if problems:
                problems[0] = "with " + ", ".join(_describe(path, value) for path, value in changes) + ": " + problems[0]
        if problems:
            raise PipelineError("; ".join(problems))
        new_text = edit_params_text(text, changes)
    except PipelineError as exc:
        raise PipelineError(f"{exc} ({params_file.name} unchanged)") from None
    if not dry_run and new_text != text:
        write_params_text(params_file, new_text)
    return merged
