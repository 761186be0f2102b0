"""The synthesize stage as a user runs it, on the sample corpus and on planted bad or contaminated rows."""

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from helpers import StageRun, give_base_tokenizer, run_stage_here

from bayling.config.synthesize import DATA_TASKS

pytestmark = pytest.mark.integration


def run(project: Path, stage: str) -> StageRun:
    return run_stage_here(project, stage)


def set_params(project: Path, **synth) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for key, value in synth.items():
        params["synthesize"][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def write_corpus(project: Path, rows: list[dict]) -> None:
    path = project / "data" / "raw" / "corpus.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def digest(project: Path) -> str:
    h = hashlib.sha256()
    for name in ("train.jsonl", "heldout.jsonl", "card.json", "quarantine.jsonl"):
        h.update((project / "data" / "synth" / name).read_bytes())
    return h.hexdigest()


@pytest.fixture(autouse=True)
def base_tokenizer(project_copy: Path, tokenizer_dir: Path) -> None:
    """Synthesize measures chats with the base model's tokenizer: the SmolLM2 one, without running base_model."""
    give_base_tokenizer(project_copy, tokenizer_dir)


@pytest.fixture
def sample_corpus(project_copy: Path) -> Path:
    result = run(project_copy, "fetch")
    assert result.returncode == 0, result.stderr
    return project_copy


def test_sample_run_produces_every_data_task_and_a_card(sample_corpus: Path):
    result = run(sample_corpus, "synthesize")
    assert result.returncode == 0, result.stderr
    card = json.loads((sample_corpus / "data/synth/card.json").read_text())
    tasks = card["splits"]["train"]["per_task"]
    assert set(DATA_TASKS) <= set(tasks), f"missing {set(DATA_TASKS) - set(tasks)}"
    assert card["filters"]["rows_in"] == card["filters"]["rows_kept"] + card["filters"]["rows_quarantined"] == 300
    mix = card["mix"]
    # the shipped general chats (dolly en, oasst1 zh), cut to the context, let the default reach BayLing 2's shares of
    # supervised tokens within 2 points (the per-conversation draws are the only noise)
    assert mix["requested"] == {"any.zh": 0.432, "any.en": 0.262, "any.cross": 0.306} and mix["unit"] == "supervised_tokens"
    assert all(abs(mix["achieved"][cell] - share) <= 0.02 for cell, share in mix["requested"].items()), mix["achieved"]
    # and no general chat is longer than tokenize will take: those that were are cut or set aside, with a reason
    general = card["general"]
    assert general["chats_in"] == general["chats_kept"] + general["set aside: longer than tokenize.max_seq_len"]
    quarantined = [json.loads(line) for line in (sample_corpus / "data/synth/quarantine.jsonl").read_text().splitlines()]
    too_long = [q for q in quarantined if "tokenize.max_seq_len=256" in json.dumps(q)]
    assert len(too_long) == general["set aside: longer than tokenize.max_seq_len"] > 0
    assert mix["kept"]["any.zh"] > mix["available"]["any.zh"] == mix["kept_unique"]["any.zh"]  # resample repeated them all
    languages = mix["languages"]
    assert set(languages) == {"eng_Latn", "fra_Latn", "swh_Latn", "zho_Hans"}
    assert sum(row["used"] for row in languages.values()) == sum(mix["kept"].values()) == sum(mix["kept_by_family"].values())
    assert all(row["repeat"] == round(row["used"] / row["available"], 3) for row in languages.values())
    assert card["decontamination"]["eval_set_segments"] == {"flores": 4 * 1012}  # evaluate's flores: every devtest file
    assert set(card["splits"]["train"]["per_instruction_language"]) == {"en", "zh"}
    assert any("needs the teacher" in k for k in card["interactive"]["skipped_followups"])
    card_md = (sample_corpus / "data/synth/card.md").read_text()
    assert card_md.startswith("# Synthesized instruction data") and "| swh_Latn | 884 |" in card_md
    assert (sample_corpus / "reports/synth/languages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_bytes_and_dask_agrees(sample_corpus: Path):
    assert run(sample_corpus, "synthesize").returncode == 0
    first = digest(sample_corpus)
    assert run(sample_corpus, "synthesize").returncode == 0
    assert digest(sample_corpus) == first
    set_params(sample_corpus, shard_size=64, dask={"enabled": True, "address": None, "n_workers": 2})
    on_dask = run(sample_corpus, "synthesize")
    assert on_dask.returncode == 0, on_dask.stderr
    set_params(sample_corpus, shard_size=64, dask={"enabled": False, "address": None, "n_workers": 2})
    assert run(sample_corpus, "synthesize").returncode == 0
    sequential = digest(sample_corpus)
    assert run(sample_corpus, "synthesize").returncode == 0  # same shard size, same bytes
    assert digest(sample_corpus) == sequential
    set_params(sample_corpus, shard_size=64, dask={"enabled": True, "address": None, "n_workers": 2})
    assert run(sample_corpus, "synthesize").returncode == 0
    assert digest(sample_corpus) == sequential


def test_planted_eval_sentences_are_all_removed(project_copy: Path, flores_dir: Path):
    eng = (flores_dir / "devtest" / "eng_Latn.devtest").read_text().splitlines()
    fra = (flores_dir / "devtest" / "fra_Latn.devtest").read_text().splitlines()
    clean = [{"id": f"c:{i}", "source": "c", "texts": {"eng_Latn": f"Clean sentence {i} about soap and water.",
                                                       "fra_Latn": f"Phrase propre {i} sur le savon et l'eau."}} for i in range(40)]
    planted = [
        {"id": "p:1", "source": "p", "texts": {"eng_Latn": eng[10], "fra_Latn": "Une phrase sans rapport."}},
        {"id": "p:2", "source": "p", "texts": {"eng_Latn": eng[20].upper(), "fra_Latn": "Une autre phrase."}},  # case changed
        {"id": "p:3", "source": "p", "texts": {"eng_Latn": "Unrelated English.", "fra_Latn": fra[30].rstrip(".") + " !"}},
        {"id": "p:4", "source": "p", "texts": {"eng_Latn": "He said: " + " ".join(eng[40].split()[:14]) + " and left.",
                                               "fra_Latn": "Il l'a dit puis il est parti."}},  # a 13-gram inside
        {"id": "p:5", "source": "p", "texts": {"eng_Latn": eng[50], "fra_Latn": fra[50]}},
    ]
    assert all(len(eng[i].split()) >= 14 for i in (40,))
    write_corpus(project_copy, clean[:20] + planted + clean[20:])
    flores_glob = str(flores_dir / "devtest" / "*.devtest")
    set_params(project_copy, decontamination={"ngram": 13, "against": [], "extra": [
        {"name": "flores-devtest", "format": "lines", "paths": [flores_glob]},
    ]})
    result = run(project_copy, "synthesize")
    assert result.returncode == 0, result.stderr
    card = json.loads((project_copy / "data/synth/card.json").read_text())
    assert card["decontamination"]["corpus_rows_removed"] == {"flores-devtest": 5}
    assert card["filters"]["rows_quarantined"] == 5 and card["filters"]["rows_kept"] == 40
    produced = (project_copy / "data/synth/train.jsonl").read_text() + (project_copy / "data/synth/heldout.jsonl").read_text()
    for row in planted:
        assert row["texts"]["fra_Latn"] not in produced
    quarantined = [json.loads(line) for line in (project_copy / "data/synth/quarantine.jsonl").read_text().splitlines()]
    assert sorted(q["file"] for q in quarantined if q["kind"] == "row") == [f"corpus:p:{i}" for i in range(1, 6)]


def test_bad_rows_land_in_quarantine_with_reasons(project_copy: Path):
    rows = [
        {"id": "g:1", "source": "g", "texts": {"eng_Latn": "Wash your hands.", "zho_Hans": "洗手。"}},
        {"id": "b:script", "source": "b", "texts": {"eng_Latn": "Stay home.", "zho_Hans": "Stay home please."}},
        {"id": "b:ratio", "source": "b", "texts": {"eng_Latn": "Yes.", "fra_Latn": "Oui, " * 40}},
        {"id": "b:dup", "source": "b", "texts": {"eng_Latn": "wash your HANDS", "zho_Hans": "洗手"}},
        {"id": "g:2", "source": "g", "texts": {"eng_Latn": "Wear a mask.", "zho_Hans": "戴口罩。", "fra_Latn": "Мойте руки."}},
    ]
    write_corpus(project_copy, rows)
    result = run(project_copy, "synthesize")
    assert result.returncode == 0, result.stderr
    card = json.loads((project_copy / "data/synth/card.json").read_text())
    screened = card["filters"]
    assert (screened["rows_in"], screened["rows_kept"], screened["rows_quarantined"]) == (5, 2, 3)
    assert screened["row_reasons"] == {"duplicate": 1, "fewer than two": 2}
    assert screened["segments_removed"] == {"length ratio": 1, "wrong script": 2}
    records = [json.loads(line) for line in (project_copy / "data/synth/quarantine.jsonl").read_text().splitlines()]
    by_file = {}
    for record in records:
        by_file.setdefault(record["file"], []).append((record["kind"], record["field"], record["reason"].split(":")[0]))
    assert ("segment", "texts.zho_Hans", "wrong script") in by_file["corpus:b:script"]
    assert ("segment", "texts", "length ratio 50.0 between eng_Latn and fra_Latn exceeds 3.0") in by_file["corpus:b:ratio"]
    assert ("segment", "texts.fra_Latn", "wrong script") in by_file["corpus:g:2"]
    assert ("row", None, "duplicate (normalized)") in by_file["corpus:b:dup"]
