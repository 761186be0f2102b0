"""Comparing a rebuild with a registered version's record: stage order, what counts, and how a difference reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from bayling.core.errors import PipelineError
from bayling.reproduce.comparison import Verdict, cache_file, explain, render, stage_results
from bayling.reproduce.record import ModelRef, RecordedVersion, check_lock_matches, parse_model_uri
from bayling.reproduce.work_tree import stages_from

ORDER = ["base_model", "fetch", "tokenize", "train", "evaluate", "register"]
STAGE_OUTS = {
    "base_model": [("models/base", True)],
    "fetch": [("data/raw", True)],
    "tokenize": [("data/tokenized", True), ("reports/tokenize/stats.json", False)],
    "train": [("models/final", True), ("reports/train/run.json", False)],
    "evaluate": [("reports/eval/predictions", True), ("reports/eval/run.json", False)],
    "register": [("reports/register.json", False)],
}


class Cache:
    """A DVC 3 cache folder written the way DVC writes it: files/md5/ab/cdef..., directories as .dir lists."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes) -> str:
        md5 = hashlib.md5(data).hexdigest()
        path = cache_file(self.root, md5)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return md5

    def directory(self, files: dict[str, bytes]) -> str:
        listing = json.dumps([{"md5": self.put(data), "relpath": rel} for rel, data in sorted(files.items())]).encode()
        md5 = hashlib.md5(listing).hexdigest() + ".dir"
        path = cache_file(self.root, md5)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(listing)
        return md5


def weights(tmp_path: Path, name: str, scale: float) -> bytes:
    torch.manual_seed(0)
    tensors = {"layer.0.weight": torch.randn(8, 8), "layer.1.weight": torch.randn(8, 8), "norm.weight": torch.ones(8)}
    tensors["layer.1.weight"] = tensors["layer.1.weight"] * scale
    path = tmp_path / name
    save_file(tensors, str(path))
    return path.read_bytes()


def recorded(outs: dict[str, str]) -> RecordedVersion:
    return RecordedVersion("m", "3", "abc123def456", False, outs, "run-1")


def test_model_uris_by_version_and_alias_and_refusals():
    assert parse_model_uri("models:/bayling/7") == ModelRef("bayling", "7", None)
    assert parse_model_uri("models:/bayling@champion") == ModelRef("bayling", None, "champion")
    assert str(parse_model_uri("models:/bayling@champion")) == "models:/bayling@champion"
    for bad in ("bayling/7", "models:/bayling", "models:/bayling/seven", "runs:/abc/model"):
        with pytest.raises(PipelineError, match="models:/NAME/VERSION"):
            parse_model_uri(bad)


def test_identical_cached_outputs_reproduce_even_when_reports_differ():
    outs = {"models/base": "b", "data/raw": "r.dir", "data/tokenized": "t.dir", "reports/tokenize/stats.json": "s1",
            "models/final": "f.dir", "reports/train/run.json": "run-a", "reports/eval/predictions": "p.dir", "reports/eval/run.json": "e"}
    rebuilt = dict(outs, **{"reports/train/run.json": "run-b", "reports/eval/run.json": "e2"})
    verdict = Verdict(stage_results(ORDER, STAGE_OUTS, outs, rebuilt), stages_from(ORDER, None))
    assert verdict.reproduced and verdict.first_difference is None
    assert len(verdict.checked()) == 5
    text = render(ModelRef("m", "3"), recorded(outs), verdict, Path("/nonexistent"), Path("/w"))
    assert "reproduced bit for bit: 5 cached outputs" in text and "1 of 3 identical" in text


def test_the_first_differing_stage_in_pipeline_order_is_named(tmp_path: Path):
    cache = Cache(tmp_path / "cache")
    rows = [json.dumps({"id": i}) for i in range(5)]
    old_final = cache.directory({"model.safetensors": weights(tmp_path, "a", 1.0), "config.json": b'{"a": 1}'})
    new_final = cache.directory({"model.safetensors": weights(tmp_path, "b", 1.5), "config.json": b'{"a": 1}'})
    old_raw = cache.directory({"corpus.jsonl": "\n".join(rows).encode()})
    outs = {"models/base": "b", "data/raw": old_raw, "data/tokenized": "t.dir", "models/final": old_final,
            "reports/eval/predictions": "p.dir"}
    rebuilt = dict(outs, **{"models/final": new_final, "reports/eval/predictions": "q.dir"})
    verdict = Verdict(stage_results(ORDER, STAGE_OUTS, outs, rebuilt), stages_from(ORDER, None))
    assert verdict.first_difference.stage == "train"  # evaluate differs too, but after it
    text = render(ModelRef("m", "3"), recorded(outs), verdict, cache.root, tmp_path)
    assert "first stage whose output differs is 'train'" in text and "later stages also differ: evaluate" in text
    assert "models/final: 1 of 2 files differ" in text and "1 of 3 tensors changed" in text
    assert "layer.1.weight: ||Δ||" in text and "layer.0.weight: ||Δ||" not in text
    assert "identical before it: base_model, fetch, tokenize" in text

    new_raw = cache.directory({"corpus.jsonl": "\n".join(rows[:3] + [json.dumps({"id": 9})]).encode()})
    fetch = Verdict(stage_results(ORDER, STAGE_OUTS, outs, dict(outs, **{"data/raw": new_raw})), stages_from(ORDER, None))
    (lines,) = [explain(o, cache.root) for o in fetch.first_difference.differing]
    assert "corpus.jsonl: rows 5 -> 4 (2 recorded rows gone, 1 new)" in "\n".join(lines)


def test_stages_before_from_are_not_judged_and_register_never_reruns():
    assert stages_from(ORDER, "train") == ["train", "evaluate"]
    assert "register" not in stages_from(ORDER, None)
    with pytest.raises(PipelineError, match="--from 'register'"):
        stages_from(ORDER, "register")
    outs = {"data/raw": "r.dir", "models/final": "f.dir"}
    # a pulled upstream output that somehow differs is not this rebuild's doing
    verdict = Verdict(stage_results(ORDER, STAGE_OUTS, outs, {"data/raw": "x.dir", "models/final": "f.dir"}), ["train", "evaluate"])
    assert verdict.reproduced


def test_a_missing_recorded_object_is_said_not_guessed(tmp_path: Path):
    cache = Cache(tmp_path / "cache")
    new = cache.directory({"a.jsonl": b"{}\n"})
    verdict = Verdict(stage_results(ORDER, STAGE_OUTS, {"data/raw": "0" * 32 + ".dir"}, {"data/raw": new}), ["fetch"])
    (lines,) = [explain(o, cache.root) for o in verdict.first_difference.differing]
    assert "recorded file list is not in the cache" in lines[0]
    # a damaged file list (not JSON, not even UTF-8) loses only the description, never the verdict
    damaged = cache.put(b"\xff\xfe not a file list")
    cache_file(cache.root, damaged).rename(cache_file(cache.root, damaged + ".dir").parent / (damaged[2:] + ".dir"))
    broken = Verdict(stage_results(ORDER, STAGE_OUTS, {"data/raw": damaged + ".dir"}, {"data/raw": new}), ["fetch"])
    text = render(ModelRef("m", "3"), recorded({"data/raw": damaged + ".dir"}), broken, cache.root, tmp_path)
    assert "NOT reproduced: the first stage whose output differs is 'fetch'" in text
    assert "its cached objects could not be read (UnicodeDecodeError" in text


def test_a_logged_lock_must_match_the_version_tags():
    lock = {"stages": {"fetch": {"outs": [{"path": "data/raw", "md5": "r.dir"}]}}}
    check_lock_matches(recorded({"data/raw": "r.dir"}), lock)
    with pytest.raises(PipelineError, match="does not match its dvc.\\*.md5 tags for data/raw"):
        check_lock_matches(recorded({"data/raw": "other.dir"}), lock)
    # DVC writes an out path as params.yaml spells it; the tags are read back normalised
    spelled = {"stages": {"base_model": {"outs": [{"path": "./models/base/", "md5": "b.dir"}]}}}
    check_lock_matches(recorded({"models/base": "b.dir"}), spelled)


def test_nothing_compared_is_not_a_pass_and_a_missing_rebuild_md5_is_a_difference(tmp_path: Path):
    only_reports = Verdict(stage_results(ORDER, STAGE_OUTS, {"reports/train/run.json": "a"}, {"reports/train/run.json": "a"}), ["train"])
    assert not only_reports.reproduced and only_reports.first_difference is None
    assert "nothing was compared" in render(ModelRef("m", "3"), recorded({}), only_reports, tmp_path, None)
    lost = Verdict(stage_results(ORDER, STAGE_OUTS, {"models/final": "f.dir"}, {}), ["train"])
    assert lost.first_difference.stage == "train"
    assert "no md5 for it" in explain(lost.first_difference.differing[0], tmp_path)[0]


def test_registry_values_are_checked_before_they_reach_git_or_a_tag(tmp_path: Path):
    from bayling.register.lineage_tags import public_url
    from bayling.reproduce.work_tree import clone_at

    with pytest.raises(PipelineError, match="is not a commit id"):
        clone_at(tmp_path, "--upload-pack=touch /tmp/x", tmp_path / "w")
    assert public_url("https://user:token@example.org:8443/dvc") == "https://example.org:8443/dvc"
    assert public_url("s3://bucket/dvc") == "s3://bucket/dvc" and public_url(None) is None
    assert public_url("https://u:p@[::1]:8443/x") == "https://[::1]:8443/x"
    assert public_url("https://u:tok@host:abc/x") == "https://host:abc/x"  # kept as written, never a crash
    assert public_url("azure://container/dvc?sv=2024&sig=SECRET#frag") == "azure://container/dvc"
    assert public_url("https://u:p@[::1/x") is None


def test_reports_and_persistent_checkpoints_are_counted_but_not_held_to_bit_equality(tmp_path: Path):
    from dvc.repo import Repo

    from bayling.reproduce.comparison import dvc_stage_outs

    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {"cmd": "true", "outs": [
        "./models/final/", {"models/checkpoints": {"persist": True}}, {"reports/run.json": {"cache": False}}]}}}))
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train": {"cmd": "true", "outs": [
        {"path": "./models/final/", "md5": "f.dir"}, {"path": "models/checkpoints", "md5": "c.dir"}]}}}))
    outs, md5s = dvc_stage_outs(tmp_path)
    assert outs == {"train": [("models/final", True), ("models/checkpoints", False), ("reports/run.json", False)]}
    assert md5s == {"models/final": "f.dir", "models/checkpoints": "c.dir"}


def test_a_planted_change_no_rerun_stage_reads_is_refused_not_reported_as_reproduced():
    from bayling.reproduce.work_tree import check_overrides_rerun, stage_params

    dvc_yaml = {"stages": {
        "tokenize": {"params": ["tokenize.max_seq_len"]},
        "train": {"params": ["train.learning_rate", {"params.yaml": ["train.seed"]}, {"other.yaml": ["train.x"]}]},
        "evaluate": {"params": ["evaluate"]},
        "register": {"params": ["register.gate"]},
    }}
    assert stage_params(dvc_yaml)["train"] == ["train.learning_rate", "train.seed"]
    check_overrides_rerun(dvc_yaml, ["train", "evaluate"], ["train.learning_rate", "evaluate.max_new_tokens", "train"])
    with pytest.raises(PipelineError, match=r"-S train.learning_rate: read only by train, .*\(evaluate\); re-run from 'train'"):
        check_overrides_rerun(dvc_yaml, ["evaluate"], ["train.learning_rate"])
    with pytest.raises(PipelineError, match=r"-S register.gate.alpha: read only by register, which this rebuild does not"):
        check_overrides_rerun(dvc_yaml, ["tokenize", "train", "evaluate"], ["register.gate.alpha"])
    with pytest.raises(PipelineError, match=r"-S train.lerning_rate: read by no stage in dvc.yaml"):
        check_overrides_rerun(dvc_yaml, ["train"], ["train.lerning_rate"])


def test_the_clone_keeps_local_dvc_settings_that_point_where_they_pointed(tmp_path: Path):
    from dvc.repo import Repo

    from bayling.reproduce.work_tree import copy_local_config, dvc_cache_dir

    project, clone = tmp_path / "project", tmp_path / "deep" / "er" / "clone"
    for root in (project, clone):
        root.mkdir(parents=True)
        Repo.init(str(root), no_scm=True).close()
    (project / ".dvc" / "config.local").write_text(
        "[core]\n    remote = store\n"
        "['remote \"store\"']\n    url = ../../store\n"
        "['remote \"s3\"']\n    url = s3://bucket/dvc\n    credentialpath = ../creds.ini\n    access_key_id = AKIA\n"
        "[cache]\n    dir = ../../shared-cache\n")
    copy_local_config(project / ".dvc", clone / ".dvc")
    with Repo(str(clone)) as repo:
        remotes = repo.config["remote"]
        assert Path(remotes["store"]["url"]) == tmp_path / "store"
        assert remotes["s3"]["url"] == "s3://bucket/dvc" and remotes["s3"]["access_key_id"] == "AKIA"
        assert Path(remotes["s3"]["credentialpath"]) == project / "creds.ini"
        assert repo.config["core"]["remote"] == "store"
    assert dvc_cache_dir(clone) == dvc_cache_dir(project) == tmp_path / "shared-cache"


def test_a_logged_params_yaml_must_hold_what_the_logged_lock_says_was_read():
    from bayling.reproduce.record import check_params_match

    lock = {"stages": {"synthesize": {"params": {"params.yaml": {
        "synthesize.teacher": {"enabled": False, "base_url": None}, "synthesize.seed": 3}}}}}
    check_params_match(lock, {"synthesize": {"seed": 3, "teacher": {"enabled": False, "base_url": None}}, "other": 1})
    with pytest.raises(PipelineError, match=r"for synthesize: synthesize.teacher: the record was altered .* out of date"):
        check_params_match(lock, {"synthesize": {"seed": 3, "teacher": {"enabled": True, "base_url": "https://evil"}}})
    with pytest.raises(PipelineError, match=r"synthesize: synthesize.seed"):
        check_params_match(lock, {"synthesize": {"teacher": {"enabled": False, "base_url": None}}})


class LoggedLineage:
    """The register run's artifacts as `MlflowClient.download_artifacts` hands them over: files under lineage/."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def download_artifacts(self, run_id: str, path: str, dst: str) -> str:
        folder = Path(dst) / path
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (folder / name).write_bytes(data)
        return str(folder)


GOOD_LOCK = b"schema: '2.0'\nstages:\n  fetch:\n    outs:\n    - path: data/raw\n      md5: r.dir\n"
DAMAGED_LINEAGE = {
    "lock not UTF-8": ({"dvc.lock": b"stages:\n  fetch: \xff\xfe\n"}, "the dvc.lock .* is not UTF-8 text"),
    "lock not YAML": ({"dvc.lock": b"stages: {fetch: [outs\n"}, r"the dvc.lock .* is not valid YAML \(.* at line 2, column 1\)"),
    "lock a list": ({"dvc.lock": b"- stages\n- outs\n"}, "the dvc.lock .* is a YAML list, not a mapping"),
    "lock a string": ({"dvc.lock": b"just words\n"}, "the dvc.lock .* is a YAML string, not a mapping"),
    "stages a list": ({"dvc.lock": b"stages: [fetch, train]\n"}, "has `stages` that is not a mapping"),
    "a stage a list": ({"dvc.lock": b"stages:\n  fetch: [data/raw]\n"}, "has stage `fetch` that is not a mapping"),
    "outs of strings": ({"dvc.lock": b"stages:\n  fetch:\n    outs: [data/raw]\n"}, r"`stages.fetch.outs` that is not a list"),
    "params a list": ({"dvc.lock": GOOD_LOCK + b"    params: [seed]\n"}, r"`stages.fetch.params` that is not a mapping"),
    "params.yaml a list": ({"dvc.lock": GOOD_LOCK, "params.yaml": b"- fetch\n"}, "the params.yaml .* is a YAML list"),
}


@pytest.mark.parametrize("damage", DAMAGED_LINEAGE, ids=list(DAMAGED_LINEAGE))
def test_a_damaged_logged_lineage_is_a_pipeline_error_naming_the_file(damage: str, tmp_path: Path):
    from bayling.reproduce.record import restore_lineage

    files, message = DAMAGED_LINEAGE[damage]
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "dvc.lock").write_text("the commit's own\n")
    with pytest.raises(PipelineError, match=message) as raised:
        restore_lineage(LoggedLineage(files), recorded({"data/raw": "r.dir"}), workdir)
    assert "version 3" in str(raised.value) and "lineage/" in str(raised.value) and "run-1" in str(raised.value)
    assert "\n" not in str(raised.value)
    if "params.yaml" not in damage:
        assert (workdir / "dvc.lock").read_text() == "the commit's own\n"  # nothing damaged reaches the work tree
    # a whole record restores
    whole = tmp_path / "whole"
    whole.mkdir()
    assert restore_lineage(LoggedLineage({"dvc.lock": GOOD_LOCK}), recorded({"data/raw": "r.dir"}), whole) == []
    assert (whole / "dvc.lock").read_bytes() == GOOD_LOCK


def test_a_workdir_must_be_a_new_or_empty_folder(tmp_path: Path):
    from bayling.reproduce.work_tree import check_workdir

    readme = tmp_path / "README.md"
    readme.write_text("a file\n")
    for path in (readme, readme / "under"):
        with pytest.raises(PipelineError, match=f"--workdir {path}: {readme} is a file, not a folder"):
            check_workdir(path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(PipelineError, match="exists and is not empty"):
        check_workdir(tmp_path / "full")
    (tmp_path / "empty").mkdir()
    check_workdir(tmp_path / "empty")
    check_workdir(tmp_path / "new" / "deeper")


def _dvc(project: Path, *args: str) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# What register does while `dvc repro` runs it: log dvc.lock and params.yaml (its lineage) before DVC writes
# register's own entry into dvc.lock, which DVC does only once the command has finished.
LOG_LINEAGE = ("python -c \"import shutil, os; os.makedirs('lineage', exist_ok=True); "
               "[shutil.copy(f, 'lineage/' + f) for f in ('dvc.lock', 'params.yaml')]; open('register.json', 'w').write('{}')\"")


class LineageClient:
    """The register run's artifacts, as MlflowClient.download_artifacts hands them over."""

    def __init__(self, logged: Path) -> None:
        self.logged = logged

    def download_artifacts(self, run_id: str, path: str, dst: str) -> str:
        import shutil

        return shutil.copytree(self.logged, Path(dst) / path)


def test_a_version_registered_after_a_register_only_change_restores_cleanly_and_a_tampered_record_does_not(tmp_path: Path):
    """Run 1 with register.gate.min_scores {chrf: 50}, run 2 with {}: only register re-runs, and the lock it logs still
    holds run 1's register entry. Reproduce never re-runs register, so that entry is no evidence of tampering; a changed
    value of a stage it does re-run still is."""
    from dvc.repo import Repo

    from bayling.reproduce.record import lock_outs, restore_lineage

    project = tmp_path / "project"
    project.mkdir()
    Repo.init(str(project), no_scm=True).close()
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "train": {"cmd": "python -c \"open('model.txt', 'w').write('weights')\"", "params": ["train.seed"], "outs": ["model.txt"]},
        "register": {"cmd": LOG_LINEAGE, "deps": ["model.txt"], "params": ["register.gate"],
                     "outs": [{"register.json": {"cache": False}}]},
    }}))

    def params(min_scores: dict) -> None:
        (project / "params.yaml").write_text(yaml.safe_dump({"train": {"seed": 7}, "register": {"gate": {"min_scores": min_scores}}}))

    params({"chrf": 50})
    _dvc(project, "repro")
    params({})
    _dvc(project, "repro")
    logged = project / "lineage"
    lock = yaml.safe_load((logged / "dvc.lock").read_text())
    assert lock["stages"]["register"]["params"]["params.yaml"]["register.gate"] == {"min_scores": {"chrf": 50}}  # run 1's
    version = RecordedVersion("m", "2", "abc123def456", False, lock_outs(lock), "run-2")

    workdir = tmp_path / "work"
    workdir.mkdir()
    restore_lineage(LineageClient(logged), version, workdir)
    assert yaml.safe_load((workdir / "params.yaml").read_text())["register"]["gate"] == {"min_scores": {}}

    (logged / "params.yaml").write_text((logged / "params.yaml").read_text().replace("seed: 7", "seed: 8"))
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    with pytest.raises(PipelineError, match=r"for train: train.seed: the record was altered after registration"):
        restore_lineage(LineageClient(logged), version, tampered)
    (logged / "params.yaml").write_text((logged / "params.yaml").read_text().replace("seed: 8", "seed: 7"))
    (tampered / "lock").mkdir()
    model_md5 = lock["stages"]["train"]["outs"][0]["md5"]
    (logged / "dvc.lock").write_text((logged / "dvc.lock").read_text().replace(model_md5, "0" * 32))
    with pytest.raises(PipelineError, match=r"does not match its dvc.\*.md5 tags for model.txt: the record was altered"):
        restore_lineage(LineageClient(logged), version, tampered / "lock")


def test_a_config_local_that_cannot_be_read_is_removed_whole_rather_than_kept_with_its_credentials(tmp_path: Path):
    from bayling.reproduce.work_tree import remove_credentials

    remove_credentials(tmp_path)  # no .dvc/config.local: nothing to do
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config.local").write_text("['remote \"s3\"'\n    secret_access_key = s3cr3t\n")
    remove_credentials(tmp_path)
    assert not (tmp_path / ".dvc" / "config.local").exists()
