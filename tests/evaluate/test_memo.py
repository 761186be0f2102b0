import json
import logging
import shutil
from pathlib import Path

import pytest

from bayling.core.errors import PipelineError
from bayling.evaluate.memo import remembered

PROMPTS = [[{"role": "user", "content": "Provide the French translation for this sentence: Hello."}]]
SETTINGS = {"batch_size": 8, "max_new_tokens": 16, "num_beams": 1, "precision": "fp32", "first_line_only": True}


def test_outputs_are_remembered_by_everything_that_decides_them(tiny_model_dir: Path, tmp_path: Path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    cache = tmp_path / "cache"
    calls: list[int] = []

    def produce() -> list[str]:
        calls.append(1)
        return [f"Bonjour {len(calls)}"]

    assert remembered(cache, model_dir, PROMPTS, SETTINGS, produce) == (["Bonjour 1"], False)
    assert remembered(cache, model_dir, PROMPTS, SETTINGS, produce) == (["Bonjour 1"], True)
    assert len(calls) == 1
    # any change to what decides the outputs is a miss: settings, prompts, the model's files
    assert remembered(cache, model_dir, PROMPTS, {**SETTINGS, "max_new_tokens": 17}, produce) == (["Bonjour 2"], False)
    other = [[{"role": "user", "content": "Provide the French translation for this sentence: Goodbye."}]]
    assert remembered(cache, model_dir, other, SETTINGS, produce)[1] is False
    (model_dir / "config.json").write_text((model_dir / "config.json").read_text() + " ")
    assert remembered(cache, model_dir, PROMPTS, SETTINGS, produce) == (["Bonjour 4"], False)
    # an unreadable entry is recomputed, not trusted; no cache at all always produces
    for entry in cache.glob("*.json"):
        entry.write_text("{not json")
    assert remembered(cache, model_dir, PROMPTS, SETTINGS, produce) == (["Bonjour 5"], False)
    assert remembered(None, model_dir, PROMPTS, SETTINGS, produce) == (["Bonjour 6"], False)


def _model(tmp_path: Path) -> Path:
    """generation_key hashes the model folder's files; any small folder stands in for a model here."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "stand-in"}')
    return model_dir


def _entry(cache: Path) -> Path:
    (entry,) = cache.glob("*.json")
    return entry


DAMAGED = {
    "non-UTF-8 bytes": lambda entry: b"\xff\xfe\x00\x81 not text",
    "a list of integers": lambda entry: b"[1, 2, 3]",
    "an integer": lambda entry: b"7",
    "integer outputs": lambda entry: json.dumps({**entry, "outputs": [1]}).encode(),
    "outputs edited after writing": lambda entry: json.dumps({**entry, "outputs": ["Salut"]}).encode(),
    "no key or checksum (an older entry)": lambda entry: json.dumps({"outputs": entry["outputs"]}).encode(),
    "no checksum": lambda entry: json.dumps({k: v for k, v in entry.items() if k != "checksum"}).encode(),
}


@pytest.mark.parametrize("damage", DAMAGED, ids=list(DAMAGED))
def test_a_damaged_entry_is_a_miss_with_a_warning_and_is_written_again(damage: str, tmp_path: Path, caplog):
    model_dir, cache = _model(tmp_path), tmp_path / "cache"
    answers = iter(["Bonjour", "Bonjour again"])
    remembered(cache, model_dir, PROMPTS, SETTINGS, lambda: [next(answers)])
    entry = _entry(cache)
    entry.write_bytes(DAMAGED[damage](json.loads(entry.read_text("utf-8"))))

    with caplog.at_level(logging.WARNING, logger="bayling.evaluate.memo"):
        assert remembered(cache, model_dir, PROMPTS, SETTINGS, lambda: [next(answers)]) == (["Bonjour again"], False)
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert entry.name in warning.getMessage()
    # the regenerated outputs replaced the damaged entry: the next run is a hit again
    assert remembered(cache, model_dir, PROMPTS, SETTINGS, lambda: pytest.fail("the rewritten entry was not used")) == (
        ["Bonjour again"], True)


def test_an_entry_copied_under_another_keys_file_name_is_never_served(tmp_path: Path, caplog):
    model_dir, cache = _model(tmp_path), tmp_path / "cache"
    hello = [[{"role": "user", "content": "Provide the French translation for this sentence: Hello."}]]
    goodbye = [[{"role": "user", "content": "Provide the French translation for this sentence: Goodbye."}]]
    remembered(cache, model_dir, hello, SETTINGS, lambda: ["Bonjour"])
    hello_entry = _entry(cache)
    remembered(cache, model_dir, goodbye, SETTINGS, lambda: ["Au revoir"])
    (goodbye_entry,) = [p for p in cache.glob("*.json") if p != hello_entry]
    shutil.copyfile(hello_entry, goodbye_entry)  # a well-formed entry, checksum intact, under the wrong name

    with caplog.at_level(logging.WARNING, logger="bayling.evaluate.memo"):
        assert remembered(cache, model_dir, goodbye, SETTINGS, lambda: ["Au revoir!"]) == (["Au revoir!"], False)
    assert any(goodbye_entry.name in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert json.loads(goodbye_entry.read_text("utf-8"))["outputs"] == ["Au revoir!"]
    assert remembered(cache, model_dir, hello, SETTINGS, lambda: ["unused"]) == (["Bonjour"], True)


@pytest.mark.parametrize("where", ["the file itself", "a folder under the file"])
def test_generation_cache_pointing_at_a_file_is_a_clear_error_before_generating(where: str, tmp_path: Path):
    model_dir = _model(tmp_path)
    a_file = tmp_path / "README.md"
    a_file.write_text("not a folder\n")
    cache = a_file if where == "the file itself" else a_file / "generations"
    with pytest.raises(PipelineError, match=r"evaluate\.generation_cache: .*README\.md is a file, not a folder") as raised:
        remembered(cache, model_dir, PROMPTS, SETTINGS, lambda: pytest.fail("generated although the cache cannot hold the result"))
    assert "\n" not in str(raised.value) and "null" in str(raised.value)
    assert a_file.read_text() == "not a folder\n"


def test_an_entry_that_cannot_be_written_is_a_warning_and_the_outputs_stand(tmp_path: Path, caplog):
    model_dir, cache = _model(tmp_path), tmp_path / "cache"
    remembered(cache, model_dir, PROMPTS, SETTINGS, lambda: ["Bonjour"])
    entry = _entry(cache)
    entry.unlink()
    entry.mkdir()  # the entry's name taken by a folder: the write fails after generation
    with caplog.at_level(logging.WARNING, logger="bayling.evaluate.memo"):
        assert remembered(cache, model_dir, PROMPTS, SETTINGS, lambda: ["Bonjour!"]) == (["Bonjour!"], False)
    assert any("could not write" in r.getMessage() and entry.name in r.getMessage() for r in caplog.records)
    assert entry.is_dir() and not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
