"""dvc.yaml must list, for every stage, its module and every library module it uses, and only real params."""

import ast
from pathlib import Path

import pytest
import yaml

from bayling.params import SECTIONS


def bayling_imports(path: Path, root: Path, seen: set[str] | None = None) -> set[str]:
    """Library modules (as repo-relative paths) that `path` imports, followed transitively."""
    seen = set() if seen is None else seen
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "bayling":
                names = [f"bayling.{alias.name}" for alias in node.names]
            elif node.module.startswith(("bayling.", "stages.", "flows.")):
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("bayling.")]
        for name in names:
            rel = name.replace(".", "/") + ".py"
            if (root / rel).is_file() and rel not in seen:
                seen.add(rel)
                bayling_imports(root / rel, root, seen)
    return seen


def stages(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]


def test_six_pipeline_stages_and_the_prepare_step(repo_root):
    assert list(stages(repo_root)) == ["base_model", "fetch", "synthesize", "tokenize", "train", "evaluate", "register"]


@pytest.mark.parametrize("name", ["base_model", "fetch", "synthesize", "tokenize", "train", "evaluate", "register"])
def test_stage_deps_cover_every_module_it_uses(repo_root, name):
    stage = stages(repo_root)[name]
    module = f"stages/{name}.py"
    assert stage["cmd"] == f"python -m stages.{name}"
    deps = {d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]}
    used = bayling_imports(repo_root / module, repo_root) | {module}
    missing = sorted(used - deps)
    assert not missing, f"dvc.yaml stage '{name}' should list {missing} in deps"
    resources = {"bayling/languages.py": "bayling/resources/flores200_languages.tsv",
                 "bayling/tasks.py": "bayling/resources/task_templates.yaml"}
    for module_path, resource in resources.items():
        if module_path in deps:
            assert resource in deps, f"dvc.yaml stage '{name}' reads {resource} through {module_path}"


def test_stage_params_exist_in_params_yaml(repo_root):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    for name, stage in stages(repo_root).items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: param {key} missing from params.yaml"
                node = node[part]
    assert set(params) == set(SECTIONS)


def test_every_stage_module_starts_with_its_command(repo_root):
    for name in stages(repo_root):
        doc = ast.get_docstring(ast.parse((repo_root / f"stages/{name}.py").read_text()))
        assert doc and f"python -m stages.{name}" in doc
