"""Changing params without editing params.yaml by hand: profiles (a YAML file merged over params.yaml, mappings
merge and everything else replaces) and `-S section.key=value` overrides, as `dvc exp run -S` has them.

Both check the merged params against the section schemas before anything is written, so a refused change leaves
params.yaml byte for byte as it was. The write edits the file's text where the changed values stand: every other
byte (comments, `null`, indentation, line breaks inside flow lists) stays, and the result is read back before it
is written, under YAML 1.1 (the stages' PyYAML) and YAML 1.2 (DVC's ruamel.yaml), to prove that only the changed
values read differently.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import shutil
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bayling.config.loader import SECTION_SCHEMAS, _format_loc, _readable_errors, find_problems, read_params_file, schema
from bayling.core.errors import PipelineError

Change = tuple[list[str], Any]  # a key path in params.yaml and the value it gets
LINE_WIDTH = 140  # a changed mapping or list longer than this on one line is written as a block under its key


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


# --- reading -S values: YAML 1.2 ---------------------------------------------------------------------------------


class _Core12Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2's core schema (spec 1.2.2, section 10.3.2) in place of YAML 1.1's implicit types."""


# int before float: `10` matches both patterns, and the first one registered for a character wins
for _tag, _pattern, _first in [
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    ("float", r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
     list("-+.0123456789")),
]:
    _Core12Resolver.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"), _first)


class _Core12Constructor(yaml.constructor.SafeConstructor):
    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        # YAML 1.1's reading would take `010` as octal eight and `0o17` as no number; in YAML 1.2 they are 10 and 15
        text = str(self.construct_scalar(node))
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        return int(text[2:] if base != 10 else text, base)


_Core12Constructor.add_constructor("tag:yaml.org,2002:int", _Core12Constructor.construct_yaml_int)


class Yaml12Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
                   _Core12Constructor, _Core12Resolver):
    """PyYAML reading YAML 1.2's core schema, which is how `dvc exp run -S` reads a value and how DVC reads
    params.yaml: `2e-5`, `1e3` and `.5` are floats, `yes`/`no`/`on`/`off` strings, `~` and `null` None, `true` and
    `false` booleans, `010` ten and `0o17` octal; `2024-01-02`, `1_000` and `1:30` stay strings.

    Four patterns over PyYAML's own resolver rather than a new dependency: ruamel.yaml (there only because DVC needs
    it, not a requirement of this project) reads 1.2 too, but keeps 1.1's dates and `1_000` numbers."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Core12Constructor.__init__(self)
        _Core12Resolver.__init__(self)


def parse_value(raw: str) -> Any:
    try:
        return yaml.load(raw, Loader=Yaml12Loader)  # noqa: S506 - a safe constructor
    except yaml.YAMLError as exc:
        raise PipelineError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


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


# --- writing values: what both YAML versions read back as the same value --------------------------------------------


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # a list under a key is indented, as params.yaml writes its lists
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # PyYAML quotes what YAML 1.1 would read as another type; a string YAML 1.2 would read as one (`0o17`) is quoted too
    plain_12 = _Core12Resolver().resolve(yaml.ScalarNode, data, (True, False))
    style = "'" if plain_12 != "tag:yaml.org,2002:str" else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def _flow(value: Any) -> str:
    """The value on one line, as it may stand anywhere a value can (a flow list's item is the strictest place)."""
    inside = yaml.dump([value], Dumper=_Dumper, default_flow_style=True, sort_keys=False, allow_unicode=True, width=1 << 30)
    return inside.strip()[1:-1]


def _block(value: Any, indent: int) -> str:
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True, width=1 << 30)
    return "\n".join(" " * indent + line for line in text.rstrip("\n").split("\n"))


def _canonical(value: Any) -> str:
    # json tells 1, 1.0 and true apart, which == does not
    return json.dumps(value, sort_keys=True, default=repr)


# --- editing params.yaml's text ---------------------------------------------------------------------------------------


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    end = text.find("\n", index)
    return len(text) if end < 0 else end


def _colon(text: str, key: yaml.Node) -> int:
    i = key.end_mark.index
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text) or text[i] != ":":
        raise PipelineError(f"cannot find the ':' after key '{key.value}' on line {key.start_mark.line + 1}; edit params.yaml by hand")
    return i


def _is_empty(node: yaml.Node) -> bool:
    """`key:` with nothing after it (YAML reads null)."""
    return isinstance(node, yaml.ScalarNode) and node.value == "" and node.style is None


def _value_span(text: str, key: yaml.Node, node: yaml.Node) -> tuple[int, int]:
    """Where a mapping value's text starts and ends."""
    if _is_empty(node):
        after = _colon(text, key) + 1
        return after, after
    return node.start_mark.index, _end(text, node)


def _end(text: str, node: yaml.Node) -> int:
    """Where a node's text ends: before the line breaks after a block scalar, and for a block list or mapping after its
    last value, before the comment lines that YAML's own end mark takes in."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return _value_span(text, *node.value[-1])[1]
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _end(text, node.value[-1])
    end = node.end_mark.index
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        while end > node.start_mark.index and text[end - 1] in " \t\r\n":
            end -= 1
    return end


def _splice(text: str, start: int, end: int, new: str) -> str:
    """Put `new` in place of text[start:end]; a comment after a one-line value keeps its column where there is room."""
    line_end = _line_end(text, end)
    rest = text[end:line_end]
    if "\n" in text[start:end] or not rest.strip().startswith("#"):
        return text[:start] + new + text[end:]
    gap = max(1, len(rest) - len(rest.lstrip(" ")) + (end - start) - len(new))
    return text[:start] + new + " " * gap + rest.lstrip(" ") + text[line_end:]


def _wants_block(value: Any, replaces_block: bool, column: int, key: str) -> bool:
    if not isinstance(value, (dict, list)) or not value:
        return False
    return replaces_block or column + len(key) + 2 + len(_flow(value)) > LINE_WIDTH


def _replace(text: str, mapping: yaml.MappingNode, key: yaml.Node, node: yaml.Node, value: Any) -> str:
    start, end = _value_span(text, key, node)
    flow = _flow(value)
    if mapping.flow_style:
        return _splice(text, start, end, (" " if _is_empty(node) else "") + flow)
    column = key.start_mark.column
    block_before = isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style and bool(node.value)
    block = _wants_block(value, block_before, column, key.value)
    own_lines = not _is_empty(node) and node.start_mark.line > key.start_mark.line
    if own_lines and not text[_line_start(text, start):start].strip():
        # the value stands on lines of its own under the key; its last line's comment described it and goes with it
        first, last = _line_start(text, start), _line_end(text, end)
        indent = node.start_mark.column if node.start_mark.column > column else column + 2
        if block:
            return text[:first] + _block(value, indent) + text[last:]
        colon = _colon(text, key)
        if not text[colon + 1:first].strip():  # nothing beside the key: the new value moves up next to it
            return text[:colon + 1] + " " + flow + text[last:]
        return text[:first] + " " * indent + flow + text[last:]
    if block:  # the key keeps its line (and comment, in its column); the value goes under it
        line_end = _line_end(text, end)
        comment = text[end:line_end]
        key_line = text[:start] + " " * (end - start) + comment if comment.strip() else text[:start].rstrip(" \t")
        return key_line + "\n" + _block(value, column + 2) + text[line_end:]
    return _splice(text, start, end, (" " if _is_empty(node) else "") + flow)


def _insert(text: str, mapping: yaml.MappingNode, key: str, value: Any) -> str:
    entry = f"{_flow(key)}: {_flow(value)}"
    if mapping.flow_style:
        if not mapping.value:
            return _splice(text, mapping.start_mark.index, mapping.end_mark.index, "{" + entry + "}")
        at = _value_span(text, *mapping.value[-1])[1]
        return text[:at] + ", " + entry + text[at:]
    column = mapping.value[0][0].start_mark.column
    at = _line_end(text, _value_span(text, *mapping.value[-1])[1])
    if _wants_block(value, False, column, key):
        entry = f"{_flow(key)}:\n" + _block(value, column + 2)
    return text[:at] + "\n" + " " * column + entry + text[at:]


def _edit(text: str, path: list[str], value: Any) -> str:
    mapping = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(mapping, yaml.MappingNode):
        raise PipelineError("the top level of params.yaml must be a mapping of sections")
    for depth, part in enumerate(path):
        entry = next(((k, v) for k, v in mapping.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
        if entry is None:
            nested = value
            for missing in reversed(path[depth + 1:]):
                nested = {missing: nested}
            return _insert(text, mapping, part, nested)
        if depth == len(path) - 1:
            return _replace(text, mapping, *entry, value)
        if not isinstance(entry[1], yaml.MappingNode):
            raise PipelineError(f"{'.'.join(path[:depth + 1])} is not a mapping")
        mapping = entry[1]
    raise AssertionError("unreachable: a path has at least one part")


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
                problems.append(f"{where} is not a mapping (it is {_flow(node[part])}), so it has no key '{path[depth + 1]}'")
                break
            node = node[part]
        else:
            old, key = node.get(path[-1]), ".".join(path)
            dropped = [str(k) for k in old if k not in value] if isinstance(value, dict) and isinstance(old, dict) else []
            if dropped and value and _section_at(path) is not None:
                first, example = next(iter(value.items()))
                problems.append(f"{key} is a section, and a mapping replaces all of it: {', '.join(dropped)} would fall back to "
                                f"their defaults; set its keys one at a time: -S {key}.{first}={_flow(example)}")
            node[path[-1]] = copy.deepcopy(value)
    return out, problems


def edit_params_text(text: str, changes: list[Change]) -> str:
    """params.yaml's text with each change written where its value stands, everything else byte for byte as it was.

    Refuses (PipelineError) a result that would read differently anywhere but the changed values, under either YAML
    version that reads this file: PyYAML's 1.1 in the stages, ruamel.yaml's 1.2 in DVC."""
    new = text
    for i, (path, value) in enumerate(changes):
        new = _edit(new, path, value)
        for loader, version in ((yaml.SafeLoader, "1.1, as the stages read it"), (Yaml12Loader, "1.2, as DVC reads it")):
            expected = with_changes(yaml.load(text, Loader=loader) or {}, changes[: i + 1])[0]  # noqa: S506 - safe loaders
            if _canonical(yaml.load(new, Loader=loader)) != _canonical(expected):  # noqa: S506
                raise PipelineError(f"{'.'.join(path)}: cannot write {_flow(value)} in place so that YAML {version} reads back "
                                    "the same values; edit params.yaml by hand")
    return new


def write_params_text(params_file: Path, text: str) -> None:
    """Replace the file's contents in one step: a crash midway leaves the old file, never half a new one."""
    fd, temp = tempfile.mkstemp(prefix=f".{params_file.name}.", dir=params_file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        shutil.copymode(params_file, temp)
        os.replace(temp, params_file)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


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
    shown = _flow(value)
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
