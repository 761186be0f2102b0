"""flows.reproduce interrupted with Ctrl-C, before and during the stages: what it says became of the work tree is what
became of it, and a clone it keeps holds none of the DVC credentials it copied in.

The flow's own code runs (`main` and the flow function); what needs a server, git history or a DVC remote (the Prefect
API, MLflow, the clone, the pull, the stages) is replaced by stand-ins that do what each would leave behind."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

# imported here, not under capsys: DVC's logging, set up on its first import, would keep capsys's stream after the test
from dvc.config import Config
from prefect.states import Completed, Failed

import flows.reproduce as flow
from bayling.reproduce.record import RecordedVersion
from bayling.reproduce.work_tree import copy_local_config

SECRETS = ("AKIAEXAMPLE", "s3cr3t-key", "session-tok", "hunter2", "url-token")
CONFIG_LOCAL = """\
[core]
    remote = store
['remote "store"']
    url = s3://bucket/dvc
    endpointurl = http://127.0.0.1:9000
    access_key_id = AKIAEXAMPLE
    secret_access_key = s3cr3t-key
    session_token = session-tok
['remote "web"']
    url = https://reader:url-token@dvc.example.org/store
    password = hunter2
[cache]
    dir = ../shared-cache
"""
VERSION = RecordedVersion("m", "4", "abc123def4567890", False, {"models/final": "f.dir"}, "register-run")


class Client:
    """The MLflow calls the flow makes once the stages are about to start."""

    def __init__(self, *args, **kwargs) -> None:
        self.ended: list[str] = []

    def create_run(self, *args, **kwargs):
        return SimpleNamespace(info=SimpleNamespace(run_id="parent-run"))

    def set_terminated(self, run_id: str, status: str) -> None:
        self.ended.append(status)


@pytest.fixture
def project(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A checkout whose .dvc/config.local holds credentials, and the flow wired to stand-ins."""
    import mlflow

    import bayling.config.loader
    import bayling.core.tracking
    import bayling.reproduce.record
    import bayling.reproduce.work_tree
    import flows.runtime.prefect_server

    checkout = tmp_path / "checkout" / ".dvc"
    checkout.mkdir(parents=True)
    (checkout / "config.local").write_text(CONFIG_LOCAL)
    trees = tmp_path / "trees"
    trees.mkdir()

    def prepare_work_tree(recorded, client, workdir: Path, overrides, return_state: bool = False):
        # what clone_at and restore_lineage leave: the commit's files, the logged lock and params, config.local
        (workdir / ".dvc").mkdir(parents=True)
        for name in ("dvc.yaml", "params.yaml"):
            shutil.copy2(repo_root / name, workdir / name)
        copy_local_config(checkout, workdir / ".dvc")
        return Completed(data=[])  # the task is called for its state (flows.reproduce.task_result)

    monkeypatch.setattr(flow, "get_run_logger", lambda: logging.getLogger("reproduce-test"))
    monkeypatch.setattr(flow, "prepare_work_tree", prepare_work_tree)
    monkeypatch.setattr(flow, "pull", lambda workdir, env, remote, return_state=False: Completed(data="store"))
    flow_function = flow.reproduce.fn  # the flow's body, without Prefect's engine and its API server
    monkeypatch.setattr(flow, "reproduce", lambda *args, return_state=False: flow_function(*args))
    monkeypatch.setattr(flow.INTERRUPTION, "requested", False)
    monkeypatch.setattr(mlflow, "MlflowClient", Client)
    monkeypatch.setattr(bayling.reproduce.record, "recorded_version", lambda client, ref: VERSION)
    monkeypatch.setattr(bayling.reproduce.work_tree, "new_work_tree", lambda parent, recorded: Path(tempfile.mkdtemp(dir=trees)))
    monkeypatch.setattr(bayling.reproduce.work_tree, "clear_persistent_outs", lambda workdir, stages: None)
    monkeypatch.setattr(bayling.config.loader, "load_all", lambda path: {"tracking": SimpleNamespace(experiment="e")})
    monkeypatch.setattr(bayling.core.tracking, "configure", lambda root, experiment: "0")
    monkeypatch.setattr(flows.runtime.prefect_server, "prefect_api", lambda log: contextlib.nullcontext("http://prefect"))
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # main's Ctrl-C handler stays out of pytest's process
    return SimpleNamespace(trees=trees, tmp=tmp_path)


def ctrl_c(*args, **kwargs):
    """Ctrl-C with no stage running (or a second one): Interruption.handle raises KeyboardInterrupt at once."""
    raise KeyboardInterrupt


def assert_no_credentials(workdir: Path, tmp: Path) -> None:
    text = (workdir / ".dvc" / "config.local").read_text()
    assert not [s for s in SECRETS if s in text], text
    # what is not a secret stays, so DVC still finds the remote and the shared cache in the kept clone
    config = Config(dvc_dir=str(workdir / ".dvc"), validate=True)
    assert config["remote"]["store"]["url"] == "s3://bucket/dvc"
    assert config["remote"]["store"]["endpointurl"] == "http://127.0.0.1:9000"
    assert config["remote"]["web"]["url"] == "https://dvc.example.org/store"
    assert config["core"]["remote"] == "store"
    assert Path(config["cache"]["dir"]) == tmp / "checkout" / "shared-cache"


def test_ctrl_c_before_the_stages_says_the_work_tree_was_removed(project, monkeypatch, capsys):
    monkeypatch.setattr(flow, "pull", ctrl_c)
    assert flow.main(["models:/m/4"]) == 130
    err = capsys.readouterr().err.strip()
    assert not list(project.trees.iterdir())  # removed, as it holds the copied credentials
    assert err.startswith("error: interrupted before the stages ran; the work tree ") and err.endswith(" was removed"), err
    assert "left where it was" not in err and "\n" not in err


def test_ctrl_c_before_the_stages_in_a_chosen_workdir_keeps_it_without_the_credentials(project, monkeypatch, capsys):
    workdir = project.tmp / "mine"
    monkeypatch.setattr(flow, "pull", ctrl_c)
    assert flow.main(["models:/m/4", "--workdir", str(workdir)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"error: interrupted before the stages ran; the work tree {workdir} is kept (--workdir), without the DVC "
                   "credentials copied into its .dvc/config.local")
    assert_no_credentials(workdir, project.tmp)


def test_a_ctrl_c_during_a_stage_keeps_the_clone_without_the_credentials_and_says_where(project, monkeypatch, capsys):
    def rerun(workdir: Path, stage: str, env: dict, return_state: bool = False):
        flow.INTERRUPTION.requested = True  # the first Ctrl-C: the stage stopped by itself
        return Failed(message=f"interrupted during stage '{stage}'")

    monkeypatch.setattr(flow, "rerun", rerun)
    assert flow.main(["models:/m/4"]) == 130
    err = capsys.readouterr().err.strip()
    (workdir,) = project.trees.iterdir()
    assert err == (f"error: interrupted during stage 'base_model'\nthe work tree is kept at {workdir}; the DVC credentials "
                   "copied into its .dvc/config.local were removed after the pull")
    assert_no_credentials(workdir, project.tmp)


def test_a_second_ctrl_c_during_a_stage_says_the_clone_is_kept(project, monkeypatch, capsys):
    monkeypatch.setattr(flow, "rerun", ctrl_c)
    assert flow.main(["models:/m/4"]) == 130
    err = capsys.readouterr().err.strip()
    (workdir,) = project.trees.iterdir()
    assert err == (f"error: interrupted during the stages; the work tree is kept at {workdir}; the DVC credentials copied "
                   "into its .dvc/config.local were removed after the pull")
    assert_no_credentials(workdir, project.tmp)
