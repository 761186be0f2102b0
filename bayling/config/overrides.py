"""Changing params without editing params.yaml by hand: profiles (a YAML file merged over params.yaml, mappings
merge and everything else replaces) and `-S section.key=value` overrides, as `dvc exp run -S` has them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from bayling.core.errors import PipelineError


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.max_steps=10' -> (['train', 'max_steps'], 10); the value is read as YAML."""
    import yaml

    if "=" not in text:
        raise PipelineError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if len(path) < 2:
        raise PipelineError(f"override '{text}': name a section and a key, e.g. train.max_steps=10")
    return path, yaml.safe_load(raw)


def apply_overrides(params_file: Path, overrides: dict[str, Any]) -> None:
    """Write overrides into params.yaml in place, keeping its comments and layout (as dvc exp run -S does)."""
    from ruamel.yaml import YAML

    if not overrides:
        return
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(params_file.read_text("utf-8"))
    for key, value in overrides.items():
        path = key.split(".")
        node = data
        for part in path[:-1]:
            if part not in node or not hasattr(node[part], "keys"):
                raise PipelineError(f"override {key}: params.yaml has no section {'.'.join(path[:path.index(part) + 1])}")
            node = node[part]
        node[path[-1]] = value
    with open(params_file, "w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
