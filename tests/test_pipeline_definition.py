"""dvc.yaml: every stage depends on its own library subpackage, core, the config schemas of the sections it
reads and every other module it imports, and on nothing it does not use; params named there exist."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bayling.config.loader import SECTION_SCHEMAS

STAGE_NAMES = ["base_model", "fetch", "synthesize", "tokenize", "audit", "train", "evaluate", "register"]
STEP_NAMES = [name for name in STAGE_NAMES if name != "audit"]  # the audit runs within the tokenize step
SHARED_DEPS = {"stages/_common.py", "bayling/__init__.py", "bayling/core", "bayling/config/loader.py", "bayling/config/types.py"}


def imported_modules(path: Path, root: Path, seen: set[str] | None = None) -> set[str]:
    """Project modules (repo-relative .py paths) that `path` imports, followed transitively."""
    seen = set() if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("bayling", "stages", "flows"):
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "bayling"]
        for name in names:
            parts = name.split(".")
            # importing bayling.x.y runs bayling/__init__.py and bayling/x/__init__.py first
            candidates = ["/".join(parts[:i]) + "/__init__.py" for i in range(1, len(parts) + 1)] + ["/".join(parts) + ".py"]
            for rel in candidates:
                if (root / rel).is_file() and rel not in seen:
                    seen.add(rel)
                    imported_modules(root / rel, root, seen)
    return seen


def stage_sections(module: Path) -> list[str]:
    """The params sections a stage validates: the list literal in its run_stage(...) call."""
    for node in ast.walk(ast.parse(module.read_text("utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_stage":
            return [elt.value for elt in node.args[1].elts]
    raise AssertionError(f"{module} has no run_stage call")


def stages(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]


def covered(module: str, deps: set[str]) -> bool:
    return module in deps or any(module.startswith(d.rstrip("/") + "/") for d in deps)


def has_behaviour(module: Path) -> bool:
    """False for a package __init__ that holds nothing but its docstring: importing it changes nothing."""
    body = ast.parse(module.read_text("utf-8")).body
    return not (module.name == "__init__.py" and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body))


def test_six_pipeline_stages_and_the_prepare_step(repo_root):
    assert list(stages(repo_root)) == STAGE_NAMES
    assert {name: stage["meta"] for name, stage in stages(repo_root).items() if "meta" in stage} == {"audit": {"step": "tokenize"}}


def test_the_flow_reads_its_stage_list_from_dvc_yaml(repo_root):
    """Six steps and the prepare step, as the user runs and sees them; the tokenize step runs the audit stage after it."""
    from flows.retrain import STAGES, pipeline_stages, step_stages

    assert STAGES == pipeline_stages(repo_root) == STEP_NAMES
    assert step_stages(repo_root) == {name: [name, "audit"] if name == "tokenize" else [name] for name in STEP_NAMES}


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_deps_are_its_own_code(repo_root, name):
    stage = stages(repo_root)[name]
    module = f"stages/{name}.py"
    assert stage["cmd"] == f"python -m stages.{name}"
    deps = {d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]}
    used = imported_modules(repo_root / module, repo_root) | {module}
    missing = sorted(m for m in used if not covered(m, deps) and has_behaviour(repo_root / m))
    assert not missing, f"dvc.yaml stage '{name}' imports {missing} without depending on them"
    code_deps = {d for d in deps if d.startswith(("bayling", "stages"))}
    # a stage within another step (the audit) lives in that step's package and names the modules it imports from it
    within = (stage.get("meta") or {}).get("step")
    own = f"bayling/{within or name}"
    assert (within or own in code_deps) and SHARED_DEPS <= code_deps and module in code_deps
    schemas = {f"bayling/config/{section}.py" for section in stage_sections(repo_root / module)}
    config_deps = {d for d in code_deps if d.startswith("bayling/config/")} - SHARED_DEPS
    assert config_deps == schemas, f"'{name}' reads sections {sorted(schemas)} but depends on schemas {sorted(config_deps)}"
    others = {d for d in code_deps if d.startswith("bayling/") and not d.startswith("bayling/config/") and d != own} - SHARED_DEPS
    for dep in others:
        assert (repo_root / dep).is_file(), f"'{name}' depends on all of {dep}: name the modules it imports, not another stage's package"
        assert dep in used, f"'{name}' depends on {dep}, which it never imports"


def test_stage_params_exist_in_params_yaml(repo_root):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    for name, stage in stages(repo_root).items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: param {key} missing from params.yaml"
                node = node[part]
    assert set(params) == set(SECTION_SCHEMAS)


def test_every_stage_module_starts_with_its_command(repo_root):
    for name in stages(repo_root):
        doc = ast.get_docstring(ast.parse((repo_root / f"stages/{name}.py").read_text()))
        assert doc and f"python -m stages.{name}" in doc


def _changed_stages(project: Path) -> set[str]:
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    result = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout or "{}"))


def test_editing_one_schema_reruns_only_the_stages_that_read_it(repo_root, tmp_path):
    """A real `dvc status` on a copy whose dvc.lock records every stage: touch a section's schema, see who is stale."""
    from tools.smoke import project_files

    project = tmp_path / "project"
    for rel in project_files(repo_root):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / rel, project / rel)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    # Stand-ins for every out and upstream file, so `dvc commit` can record the whole pipeline as done.
    for stage in stages(project).values():
        for kind in ("outs", "metrics", "plots", "deps"):
            for entry in stage.get(kind) or []:
                path = project / (entry if isinstance(entry, str) else next(iter(entry))).replace("${base_model.path}", "models/base")
                if path.exists():
                    continue
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("stand-in\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "stand-in.txt").write_text("stand-in\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    commit = subprocess.run([sys.executable, "-m", "dvc", "commit", "--force"], cwd=project, env=env, capture_output=True, text=True)
    assert commit.returncode == 0, commit.stdout + commit.stderr
    assert _changed_stages(project) == set()
    for section, readers in {"register": {"evaluate", "register"}, "train": {"train"}, "synthesize": {"synthesize"}}.items():
        schema = project / "bayling" / "config" / f"{section}.py"
        original = schema.read_text()
        schema.write_text(original + "\n# edited\n")
        assert _changed_stages(project) == readers, section
        schema.write_text(original)
    library = project / "bayling" / "register" / "gate.py"
    library.write_text(library.read_text() + "\n# edited\n")
    assert _changed_stages(project) == {"register"}
    library.write_text(library.read_text().removesuffix("\n# edited\n"))
    # an evaluation setting leaves tokenize up to date; the test sets re-run only what reads them
    params_file = project / "params.yaml"
    original = params_file.read_text()
    for edit, readers in {"batch_size: 96": {"evaluate"}, "max_segments: 50": {"synthesize", "audit", "evaluate"}}.items():
        key, value = edit.split(": ")
        params_file.write_text(original.replace(edit, f"{key}: {int(value) + 1}", 1))
        assert _changed_stages(project) == readers, edit
    params_file.write_text(original)
