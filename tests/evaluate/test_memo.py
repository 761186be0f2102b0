import shutil
from pathlib import Path

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
