"""-S at the flows' entry points: a refused override is one line on stderr and exit 2 before Prefect starts, and
params.yaml (the checkout's, or the rebuild's work tree's) stays byte for byte as it was."""

from __future__ import annotations

import contextlib
import signal
import types
from pathlib import Path

import pytest

import flows.reproduce
import flows.retrain
import flows.runtime.prefect_server
from bayling.core.errors import PipelineError


class FlowStarted(Exception):
    """Raised where the entry point would start Prefect: everything before it ran."""


@pytest.fixture(autouse=True)
def sigint():
    """The flows' entry points take over Ctrl-C; the test process gets its own handler back."""
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def checkout(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout holding the committed params.yaml (data/ the project's); Prefect never starts."""
    (tmp_path / "data").symlink_to(repo_root / "data", target_is_directory=True)
    (tmp_path / "params.yaml").write_bytes((repo_root / "params.yaml").read_bytes())
    monkeypatch.setattr(flows.retrain, "ROOT", tmp_path)

    def no_prefect(*args, **kwargs):
        raise FlowStarted

    monkeypatch.setattr(flows.runtime.prefect_server, "prefect_api", no_prefect)
    return tmp_path


BAD = [
    (["-S", "train.max_steps=-3", "--stage", "train"], "train.max_steps"),
    (["-S", "train.max_stepz=3"], "train.max_stepz"),
    (["-S", "train.lora={r: 8}"], "train.lora"),
    (["-S", "train.learning_rate=2e-5", "-S", "evaluate.evaluate_base=false"], "evaluate.evaluate_base"),
]


@pytest.mark.parametrize(("argv", "key"), BAD, ids=[a[1] for a, _ in BAD])
def test_retrain_refuses_a_bad_override_in_one_line_before_prefect(checkout: Path, capsys: pytest.CaptureFixture, argv, key):
    before = (checkout / "params.yaml").read_bytes()
    assert flows.retrain.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and key in err and "Traceback" not in err
    assert (checkout / "params.yaml").read_bytes() == before


def test_retrain_starts_the_flow_with_a_valid_override_read_as_yaml_1_2(checkout: Path, monkeypatch: pytest.MonkeyPatch):
    before = (checkout / "params.yaml").read_bytes()
    with pytest.raises(FlowStarted):
        flows.retrain.main(["-S", "train.learning_rate=2e-5", "--stage", "train"])
    assert (checkout / "params.yaml").read_bytes() == before  # the flow writes it, inside its hold on the checkout


@pytest.fixture
def no_flow(monkeypatch: pytest.MonkeyPatch) -> dict:
    """flows.reproduce's main up to the flow: what it would have been called with."""
    called: dict = {}

    def reproduce(*args, **kwargs):
        called["args"] = args
        raise FlowStarted

    monkeypatch.setattr(flows.runtime.prefect_server, "prefect_api", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(flows.reproduce, "reproduce", reproduce)
    return called


def test_reproduce_reads_the_readmes_learning_rate_as_a_number(no_flow: dict):
    with pytest.raises(FlowStarted):
        flows.reproduce.main(["models:/bayling-smollm2-135m@champion", "--from", "train", "-S", "train.learning_rate=2e-5"])
    overrides = no_flow["args"][2]
    assert overrides == {"train.learning_rate": 2e-5} and isinstance(overrides["train.learning_rate"], float)


SCHEMA_REFUSES = [("train.max_stepz=3", "train.max_stepz"), ("train.learning_rate=fast", "train.learning_rate"), ("trian.seed=1", "trian")]


@pytest.mark.parametrize(("override", "key"), SCHEMA_REFUSES)
def test_reproduce_refuses_what_the_schema_refuses_before_it_clones(no_flow: dict, capsys: pytest.CaptureFixture, override, key):
    assert flows.reproduce.main(["models:/m/1", "-S", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and key in err and not no_flow


RECORDED = types.SimpleNamespace(commit="0" * 40)


@pytest.fixture
def work_tree(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """prepare_work_tree's clone and restored lineage: the committed params.yaml in a fresh folder."""
    import bayling.reproduce.record
    import bayling.reproduce.work_tree

    def clone_at(root: Path, commit: str, workdir: Path) -> None:
        workdir.mkdir(parents=True)
        (workdir / "data").symlink_to(repo_root / "data", target_is_directory=True)
        (workdir / "params.yaml").write_bytes((repo_root / "params.yaml").read_bytes())

    monkeypatch.setattr(bayling.reproduce.work_tree, "clone_at", clone_at)
    monkeypatch.setattr(bayling.reproduce.record, "restore_lineage", lambda client, recorded, workdir: [])
    return tmp_path / "rebuild"


@pytest.mark.parametrize("overrides", [{"train.max_steps": -3}, {"train.max_stepz": 3}, {"train.lora": {"r": 8}},
                                       {"evaluate.evaluate_base": False}])
def test_reproduce_leaves_the_restored_params_as_they_were_when_an_override_is_refused(work_tree: Path, repo_root: Path, overrides):
    # the task hands a user error back as a failed state (so Prefect logs no traceback); task_result raises it
    refused = flows.reproduce.prepare_work_tree.fn(RECORDED, None, work_tree, overrides)
    with pytest.raises(PipelineError, match="unchanged"):
        flows.reproduce.task_result(refused)
    assert (work_tree / "params.yaml").read_bytes() == (repo_root / "params.yaml").read_bytes()


def test_reproduce_plants_a_valid_override_in_its_line(work_tree: Path, repo_root: Path):
    notes = flows.reproduce.prepare_work_tree.fn(RECORDED, None, work_tree, {"train.learning_rate": 2e-5})
    assert notes == ["planted overrides: train.learning_rate=2e-05"]
    before, after = (repo_root / "params.yaml").read_text("utf-8"), (work_tree / "params.yaml").read_text("utf-8")
    assert after == before.replace("  learning_rate: 1.0e-4\n", "  learning_rate: 2.0e-05\n") != before
