"""Every `python -m ...` and `make ...` command in the code blocks of README.md and docs/*.md is checked here, as far
as it can be run without servers, GPUs or the whole pipeline, or listed with the reason it cannot be.

How a command is checked (CHECKS below):
- run: run as written (from a scratch copy where it writes), by the test named beside it;
- flow: the entry point runs up to where it would start Prefect: its arguments, params.yaml with any -S merged in,
  the stages it names, are all checked as the real command checks them, and nothing starts;
- args: its own argument parser reads the arguments (the command needs a server, a registered version, a GPU or
  the whole pipeline: the reason is given);
- make: `make -n` expands the target's recipe without running it (the target runs the pipeline or the suite);
- listed: not run (the reason is given).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import flows.runtime.prefect_server

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```|~~~)")
SEPARATORS = {"&&", "||", ";", "|", "&"}

SUITE = "runs the test suite (about 20 minutes on 2 cores), this file included"
PIPELINE = "runs the whole pipeline (minutes on the CPU)"
REGISTRY = "needs an MLflow server with that registered version"
CHECKS: dict[str, tuple[str, str]] = {
    "make run": ("make", f"{PIPELINE}, install included"),
    "make test": ("make", SUITE),
    "make smoke": ("make", f"{PIPELINE}; tests/integration/test_smoke_pipeline.py runs tools.smoke"),
    "make install": ("make", "installs the pinned dependencies into .venv (downloads)"),
    "python -m flows.retrain": ("flow", PIPELINE),
    "python -m flows.retrain --stage evaluate --stage register": ("flow", "runs two stages on the trained model under Prefect"),
    "python -m flows.retrain -S train.learning_rate=0.004": ("flow", PIPELINE),
    "python -m flows.retrain -S train.learning_rate=0.0002 -S 'register.gate.min_scores={heldout.avg.final.chrf: 20}'": (
        "flow", PIPELINE),
    "python -m flows.reproduce models:/bayling-smollm2-135m/3": ("flow", REGISTRY),
    "python -m flows.reproduce models:/bayling-smollm2-135m@champion --from train -S train.learning_rate=2e-5": ("flow", REGISTRY),
    "python -m tools.approve 7 --decision approve --note 'zh and sw up, fr flat'": ("args", REGISTRY),
    "python -m tools.approve 7 --decision reject --by 'Alice A.' --note 'regresses on fra_Latn'": ("args", REGISTRY),
    "python -m tools.approve --history 7": ("args", REGISTRY),
    "python -m tools.approve 1 --decision approve": ("args", REGISTRY),
    "python -m tools.smoke --keep --dest /tmp/showcase --profile profiles/showcase.yaml": (
        "args", f"{PIPELINE} on the showcase profile; tests/integration/test_smoke_pipeline.py runs tools.smoke"),
    "python -m tools.gpu_check --out reports/gpu_check.json": (
        "args", "on a GPU it runs about ten minutes of checks; tests/tools/test_gpu_check.py runs its --cpu-dry-run"),
    "python -m tools.score --hyp sys.txt --ref refB.txt --ref refA.txt --target-lang zho_Hans --json": (
        "run", "test_the_scorer_scores_files_as_documented"),
    "python -m tools.profile profiles/bayling3-llama3-8b.yaml --check": ("run", "test_a_profile_check_writes_nothing"),
    "python -m tools.profile profiles/bayling3-llama3-8b.yaml": ("run", "test_a_profile_applied_then_planned_as_the_cluster_guide_shows"),
    "python -m stages.train --plan": ("run", "test_a_profile_applied_then_planned_as_the_cluster_guide_shows"),
    "python -m stages.train": (
        "listed", "launches training on two nodes (docs/cluster.md); tests/integration/test_train_stage.py::"
        "test_two_nodes_of_one_rank_train_as_one_node_of_two runs that launch on one machine"),
}


def code_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every fenced code block, and of every indented one (four spaces after a blank line)."""
    fenced, indented, previous_blank = False, False, True
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            yield number, line
            continue
        if line.startswith("    ") and line.strip() and (indented or previous_blank):
            indented = True
            yield number, line
        elif line.strip():
            indented = False
        previous_blank = not line.strip()


def _starts_python(tokens: list[str], i: int) -> bool:
    return (tokens[i] == "python" or tokens[i].endswith("/python")) and tokens[i + 1:i + 2] == ["-m"]


def commands_in(line: str) -> list[list[str]]:
    """The `python -m` and `make` commands on one line of shell (a `$ ` prompt and comments dropped), each as its
    words with the interpreter's path dropped."""
    line = line.strip().removeprefix("$ ")
    if "python -m" not in line and not re.search(r"(^|[;&|]\s*)make\b", line):
        return []
    tokens = shlex.split(line, comments=True)
    commands, i = [], 0
    while i < len(tokens):
        at_start = i == 0 or tokens[i - 1] in SEPARATORS
        if not (_starts_python(tokens, i) or (tokens[i] == "make" and at_start)):
            i += 1
            continue
        end = i + 1
        while end < len(tokens) and tokens[end] not in SEPARATORS and not _starts_python(tokens, end):
            end += 1
        commands.append(["python", *tokens[i + 1:end]] if tokens[i] != "make" else tokens[i:end])
        i = end
    return commands


def documented_commands() -> dict[str, list[str]]:
    """{command: where the docs give it}."""
    found: dict[str, list[str]] = {}
    for path in DOCS:
        for number, line in code_lines(path.read_text("utf-8")):
            for words in commands_in(line):
                found.setdefault(shlex.join(words), []).append(f"{path.relative_to(ROOT)}:{number}")
    return found


def of_kind(kind: str) -> list[str]:
    return [command for command, (k, _) in CHECKS.items() if k == kind]


def test_the_extraction_finds_commands_where_the_docs_put_them():
    assert commands_in("make install && make run          # SmolLM2-135M") == [["make", "install"], ["make", "run"]]
    assert commands_in("$ python -m stages.train --plan        # bayling3") == [["python", "-m", "stages.train", "--plan"]]
    assert commands_in("  python -m stages.train                               python -m stages.train") == [
        ["python", "-m", "stages.train"], ["python", "-m", "stages.train"]]
    assert commands_in(".venv/bin/python -m tools.approve 7 --note \"a b\"   # c") == [
        ["python", "-m", "tools.approve", "7", "--note", "a b"]]
    assert commands_in("docs/                cluster.md: from make run to 8 and 2 x 8 GPUs") == []
    assert commands_in("make smoke    # whole pipeline (python -m tools.smoke)") == [["make", "smoke"]]
    text = "para\n\n    python -m tools.smoke\n    cd x\n\n```bash\nmake test\n```\n  ```bash\n  python -m tools.score\n  ```\n"
    assert [line.strip() for _, line in code_lines(text)] == ["python -m tools.smoke", "cd x", "make test", "python -m tools.score"]


def test_every_documented_command_is_checked_or_listed():
    found = documented_commands()
    unknown = {command: where for command, where in found.items() if command not in CHECKS}
    assert not unknown, f"commands in the docs that this test neither checks nor lists (add them to CHECKS): {unknown}"
    assert not set(CHECKS) - set(found), f"CHECKS names commands the docs no longer give: {set(CHECKS) - set(found)}"
    for command, (kind, how) in CHECKS.items():
        assert kind in ("run", "flow", "args", "make", "listed"), command
        assert kind != "run" or callable(globals().get(how)), f"{command}: no test named {how}"
        assert kind not in ("args", "listed") or how, f"{command}: say why it is not run"


@pytest.mark.parametrize("command", of_kind("make"))
def test_make_targets_expand(command: str):
    if shutil.which("make") is None:
        pytest.fail("make is not installed: the README's first commands need it")
    done = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


class ArgumentsRead(Exception):
    """The command's parser accepted its arguments; the command stops there."""


@pytest.mark.parametrize("command", of_kind("args"))
def test_arguments_are_accepted(command: str, monkeypatch: pytest.MonkeyPatch):
    parse_args = argparse.ArgumentParser.parse_args

    def read_then_stop(self, args=None, namespace=None):
        raise ArgumentsRead(parse_args(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", read_then_stop)
    words = shlex.split(command)
    with pytest.raises(ArgumentsRead):
        importlib.import_module(words[2]).main(words[3:])


class FlowStarted(Exception):
    """The entry point reached Prefect: everything it checks first passed."""


@pytest.fixture
def sigint():
    """The flows' entry points take over Ctrl-C; the test process gets its own handler back."""
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("command", of_kind("flow"))
def test_flow_commands_pass_every_check_before_prefect(command: str, monkeypatch: pytest.MonkeyPatch, capsys, sigint):
    def no_prefect(*args, **kwargs):
        raise FlowStarted

    monkeypatch.setattr(flows.runtime.prefect_server, "prefect_api", no_prefect)
    before = (ROOT / "params.yaml").read_bytes()
    words = shlex.split(command)
    try:
        code = importlib.import_module(words[2]).main(words[3:])
    except FlowStarted:
        code = None
    assert code is None, f"refused before the flow started (exit {code}): {capsys.readouterr().err}"
    assert (ROOT / "params.yaml").read_bytes() == before


def test_the_scorer_scores_files_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    import tools.score

    (tmp_path / "sys.txt").write_text("我们今天去了公园。\n天气很不错。\n", encoding="utf-8")
    (tmp_path / "refA.txt").write_text("我们今天去公园。\n天气非常好。\n", encoding="utf-8")
    (tmp_path / "refB.txt").write_text("今天我们去了公园。\n天气很好。\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    words = shlex.split(next(command for command in of_kind("run") if "tools.score" in command))
    assert tools.score.main(words[3:]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < scores["bleu"] < 100 and 0 < scores["chrf_pp"] < 100 and "tok:zh" in scores["signatures"]["bleu"]


def test_a_profile_check_writes_nothing(capsys):
    import tools.profile

    before = (ROOT / "params.yaml").read_bytes()
    assert tools.profile.main(["profiles/bayling3-llama3-8b.yaml", "--check"]) == 0, capsys.readouterr().err
    assert "valid" in capsys.readouterr().out and (ROOT / "params.yaml").read_bytes() == before


def test_a_profile_applied_then_planned_as_the_cluster_guide_shows(project_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """docs/cluster.md, sections 2 and 3, in a copy of the project: the profile merged into params.yaml, then the plan,
    which must print the figures the guide shows."""
    from helpers import run_stage_here

    import tools.profile

    monkeypatch.chdir(project_copy)
    # the one change to the command: --params names the copy's params.yaml, not this checkout's
    assert tools.profile.main(["profiles/bayling3-llama3-8b.yaml", "--params", "params.yaml"]) == 0, capsys.readouterr().err
    text = (project_copy / "params.yaml").read_text("utf-8")
    assert "# The single source of configuration." in text and "hf_id: meta-llama/Meta-Llama-3-8B-Instruct" in text
    plan = run_stage_here(project_copy, "train", "--plan")
    assert plan.returncode == 0, plan.stderr
    guide = (ROOT / "docs" / "cluster.md").read_text("utf-8")
    for line in ("model: 8.03B parameters", "total                 53.62 GiB of 80 GiB declared",
                 "at 40% MFU: 8.52 s per step, 3,052 steps and 7.2 h per epoch"):
        assert line in plan.stdout and line in guide, line
