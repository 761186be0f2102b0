"""params.yaml as text: reading a value as YAML 1.2 reads it (how DVC reads params.yaml and `dvc exp run -S` its
values), writing a value so that YAML 1.1 and 1.2 read it alike, editing one value where it stands with every
other byte kept, and replacing the file in one step. bayling.config.overrides decides what changes; this module
only writes it."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bayling.core.errors import PipelineError

LINE_WIDTH = 140  # a changed mapping or list longer than this on one line is written as a block under its key


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


def flow_value(value: Any) -> str:
    """The value on one line, as it may stand anywhere a value can (a flow list's item is the strictest place)."""
    inside = yaml.dump([value], Dumper=_Dumper, default_flow_style=True, sort_keys=False, allow_unicode=True, width=1 << 30)
    return inside.strip()[1:-1]


def _block(value: Any, indent: int) -> str:
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True, width=1 << 30)
    return "\n".join(" " * indent + line for line in text.rstrip("\n").split("\n"))


def canonical(value: Any) -> str:
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
    return replaces_block or column + len(key) + 2 + len(flow_value(value)) > LINE_WIDTH


def _replace(text: str, mapping: yaml.MappingNode, key: yaml.Node, node: yaml.Node, value: Any) -> str:
    start, end = _value_span(text, key, node)
    flow = flow_value(value)
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
    entry = f"{flow_value(key)}: {flow_value(value)}"
    if mapping.flow_style:
        if not mapping.value:
            return _splice(text, mapping.start_mark.index, mapping.end_mark.index, "{" + entry + "}")
        at = _value_span(text, *mapping.value[-1])[1]
        return text[:at] + ", " + entry + text[at:]
    column = mapping.value[0][0].start_mark.column
    at = _line_end(text, _value_span(text, *mapping.value[-1])[1])
    if _wants_block(value, False, column, key):
        entry = f"{flow_value(key)}:\n" + _block(value, column + 2)
    return text[:at] + "\n" + " " * column + entry + text[at:]


def edit_value(text: str, path: list[str], value: Any) -> str:
    """The text with the value at `path` replaced where it stands, or inserted (with the mappings on the way) where
    its mapping ends."""
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
