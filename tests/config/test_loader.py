from pathlib import Path

import pytest
import yaml

from bayling.config.loader import SECTION_SCHEMAS, flatten, load_all, validate_sections
from bayling.core.errors import PipelineError


def test_committed_params_are_valid(repo_root):
    params = load_all(repo_root / "params.yaml")
    assert set(params) == set(SECTION_SCHEMAS)
    assert params["fetch"].sources[0].format == "parallel"


def test_smoke_profile_merged_over_params_is_valid(repo_root):
    from bayling.config.overrides import merge

    base = yaml.safe_load((repo_root / "params.yaml").read_text())
    smoke = yaml.safe_load((repo_root / "profiles" / "smoke.yaml").read_text())
    merged = merge(base, smoke)
    models = validate_sections(merged, list(SECTION_SCHEMAS), root=repo_root)
    assert models["base_model"].source == "tiny-random"
    assert models["train"].learning_rate == smoke["train"]["learning_rate"] != base["train"]["learning_rate"]


BAD = """\
base_model:
  source: gguf
fetch:
  sources:
    - name: corpus
      format: parallel
      files:
        eng_latn: data/nowhere.en
        fra_Latn: data/nowhere.fr
synthesize:
  heldout_fraction: 1.5
train:
  max_steps: -3
  learning_rat: 0.1
"""


def test_every_problem_is_listed_at_once_with_file_lines(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(BAD)
    with pytest.raises(PipelineError) as info:
        validate_sections(yaml.safe_load(BAD), ["fetch", "synthesize", "train", "evaluate"], text=BAD, root=tmp_path)
    message = str(info.value)
    assert message.startswith("5 problems in params.yaml")
    assert (
        "params.yaml:8: fetch.sources[0].files.eng_latn: unknown FLORES-200 language code 'eng_latn'; did you mean 'eng_Latn'?" in message
    )
    assert "params.yaml:11: synthesize.heldout_fraction: Input should be less than 1" in message
    assert "params.yaml:13: train.max_steps: Input should be greater than 0" in message
    assert "params.yaml:14: train.learning_rat: unknown key" in message
    assert "evaluate: section is missing" in message


def test_missing_local_source_file_is_reported_before_work(tmp_path: Path):
    text = """\
fetch:
  sources:
    - name: corpus
      format: jsonl
      uri: data/missing.jsonl
    - name: remote
      format: jsonl
      uri: s3://bucket-only
"""
    with pytest.raises(PipelineError) as info:
        validate_sections(yaml.safe_load(text), ["fetch"], text=text, root=tmp_path)
    message = str(info.value)
    assert "params.yaml:5: fetch.sources[0].uri: file not found: data/missing.jsonl" in message
    assert "params.yaml:8: fetch.sources[1].uri: not an s3://bucket/key URL: s3://bucket-only" in message


def test_direction_lists_are_checked():
    text = "synthesize:\n  directions: [eng_Latn-fra_Latn, eng_Latn-eng_Latn, english-fra_Latn]\n"
    with pytest.raises(PipelineError) as info:
        validate_sections(yaml.safe_load(text), ["synthesize"], text=text)
    message = str(info.value)
    assert "directions[1]: direction 'eng_Latn-eng_Latn' translates a language into itself" in message
    assert "directions[2]: unknown FLORES-200 language code 'english'" in message


def test_flatten_uses_mlflow_safe_keys():
    flat = flatten({"fetch": {"sources": [{"name": "a", "files": {"eng_Latn": "x"}}], "dedupe": True}, "n": None})
    assert flat == {"fetch.sources.0.name": "a", "fetch.sources.0.files.eng_Latn": "x", "fetch.dedupe": "True", "n": "null"}


def _problems(tmp_path, text: str | bytes) -> str:
    import pytest

    from bayling.config.loader import load_all
    from bayling.core.errors import PipelineError

    path = tmp_path / "params.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(PipelineError) as caught:
        load_all(path)
    return str(caught.value)


def test_a_misspelled_section_is_an_error_with_a_hint(repo_root, tmp_path):
    text = (repo_root / "params.yaml").read_text().replace("\nregister:\n", "\nregistr:\n")
    message = _problems(tmp_path, text)
    assert "registr: unknown section; did you mean 'register'?" in message


def test_repeated_keys_loose_types_and_other_encodings_are_errors(repo_root, tmp_path):
    base = (repo_root / "params.yaml").read_text()

    def edited(old: str, new: str) -> str:
        return _problems(tmp_path, base.replace(old, new, 1))

    assert "'max_steps' appears twice in one mapping" in edited("  max_steps: 30\n", "  max_steps: 30\n  max_steps: 50\n")
    assert "train.max_steps: Input should be a valid integer" in edited("  max_steps: 30\n", "  max_steps: true\n")
    assert "train.learning_rate: Input should be a finite number" in edited("learning_rate: 1.0e-4", "learning_rate: .inf")
    assert "fetch.dedupe: Input should be a valid boolean" in edited("  dedupe: true\n", "  dedupe: 1\n")
    latin1 = base.replace("# Defaults:", "# Défauts:").encode("latin-1")
    assert "params.yaml:3: not UTF-8" in _problems(tmp_path, latin1)


def test_a_path_inside_an_archive_cannot_leave_it(repo_root):
    base = (repo_root / "params.yaml").read_text()

    def validated(old: str, new: str) -> None:
        assert base.count(old) == 1
        text = base.replace(old, new)
        validate_sections(yaml.safe_load(text), ["evaluate", "synthesize"], text=text, root=repo_root)

    def refused(old: str, new: str) -> str:
        with pytest.raises(PipelineError) as caught:
            validated(old, new)
        return str(caught.value)

    climbed = refused("      dir: devtest\n", "      dir: ../../../../etc\n")
    assert "params.yaml:138: evaluate.test_sets[0]: dir '../../../../etc' leaves the archive " \
           "data/sample/flores200/flores200-devtest.tar.gz" in climbed
    assert "dir '/etc' leaves the archive" in refused("      dir: devtest\n", "      dir: /etc\n")
    assert "pattern '../../{code}.devtest' leaves the archive" in refused(
        '      pattern: "{code}.devtest"\n', '      pattern: "../../{code}.devtest"\n')
    assert "paths[0] '../../../*' leaves the archive" in refused("    extra: []", (
        '    extra: [{name: x, format: lines, archive: data/sample/flores200/flores200-devtest.tar.gz, paths: ["../../../*"]}]'))
    # a '..' that stays inside the archive is no escape
    validated("      dir: devtest\n", "      dir: devtest/../devtest\n")
