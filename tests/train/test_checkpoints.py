from pathlib import Path

from bayling.train.checkpoints import checkpoints, config_hash, mark_complete, newest_complete, prune


def make(directory: Path, step: int, complete_for: str | None) -> Path:
    path = directory / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if complete_for:
        mark_complete(path, complete_for, step)
    return path


def test_newest_complete_checkpoint_of_the_same_configuration(tmp_path: Path):
    ours, theirs = config_hash({"lr": 1e-4}), config_hash({"lr": 2e-4})
    assert ours != theirs and config_hash({"lr": 1e-4}) == ours
    make(tmp_path, 2, ours)
    make(tmp_path, 4, ours)
    make(tmp_path, 6, None)  # killed while writing: no marker
    make(tmp_path, 10, theirs)  # left by another configuration
    assert newest_complete(tmp_path, ours) == tmp_path / "checkpoint-4"
    assert newest_complete(tmp_path, ours, before_step=4) == tmp_path / "checkpoint-2"
    removed = prune(tmp_path, ours)
    assert sorted(p.name for p in removed) == ["checkpoint-10", "checkpoint-6"]
    assert [step for step, _ in checkpoints(tmp_path)] == [2, 4]


def test_no_checkpoint_means_a_fresh_start(tmp_path: Path):
    assert newest_complete(tmp_path / "missing", "h") is None
    assert prune(tmp_path / "missing", "h") == []
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "COMPLETE").write_text("not json")
    assert newest_complete(tmp_path, "h") is None
