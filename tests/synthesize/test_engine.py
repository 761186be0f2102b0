
from dataclasses import replace

import pytest

from bayling.config.synthesize import FilterParams, SynthesizeParams
from bayling.core.records import CorpusRow
from bayling.synthesize.decontam import Decontaminator
from bayling.synthesize.engine import synthesize_block
from bayling.synthesize.screening import screen_corpus, screen_row
from bayling.synthesize.split import split_flags

GOOD = CorpusRow("s:1", "s", {"eng_Latn": "Wash your hands.", "fra_Latn": "Lavez-vous les mains.", "zho_Hans": "洗手。"})


def test_good_row_passes_untouched():
    kept, problems, reason = screen_row(GOOD, FilterParams(), None, set())
    assert kept == GOOD and problems == [] and reason is None


def test_wrong_script_segment_is_removed_and_named():
    row = replace(GOOD, texts={**GOOD.texts, "zho_Hans": "Wash your hands."})
    kept, problems, reason = screen_row(row, FilterParams(), None, set())
    assert set(kept.texts) == {"eng_Latn", "fra_Latn"} and reason is None
    assert problems[0].field == "texts.zho_Hans" and problems[0].reason.startswith("wrong script: 0% Hans, mostly Latn")


def test_absurd_length_ratio_removes_the_outlier_and_can_reject_the_row():
    long_fr = "Lavez-vous les mains " * 20
    row = CorpusRow("s:2", "s", {"eng_Latn": "Wash your hands.", "fra_Latn": long_fr, "swh_Latn": "Nawa mikono."})
    kept, problems, reason = screen_row(row, FilterParams(max_length_ratio=3.0), None, set())
    assert set(kept.texts) == {"eng_Latn", "swh_Latn"} and "length ratio" in problems[0].reason
    bitext = CorpusRow("s:3", "s", {"eng_Latn": "Hi.", "fra_Latn": long_fr})
    kept, problems, reason = screen_row(bitext, FilterParams(), None, set())
    assert kept is None and reason == "fewer than two usable segments"
    assert (problems[0].field, problems[0].reason) == ("texts", "length ratio 140.0 between eng_Latn and fra_Latn exceeds 3.0")


def test_normalized_duplicates_are_rejected():
    seen: set = set()
    assert screen_row(GOOD, FilterParams(), None, seen)[0] is not None
    shouted = CorpusRow("s:9", "s", {k: v.upper() + "!" for k, v in GOOD.texts.items()})
    assert screen_row(shouted, FilterParams(), None, seen)[2] == "duplicate (normalized)"
    assert screen_row(shouted, FilterParams(dedupe="exact"), None, set())[0] is not None


def test_decontaminated_rows_name_the_eval_set():
    index = Decontaminator()
    index.add("wmt", ["Wash your hands!"])
    kept, _, reason = screen_row(GOOD, FilterParams(), index, set())
    assert kept is None and reason == "overlaps evaluation set wmt (sentence)"


def test_screen_corpus_balances_rows():
    rows = [GOOD, replace(GOOD, id="s:2"), CorpusRow("s:3", "s", {"eng_Latn": "Hi", "zho_Hans": "Hello"})]
    results = list(screen_corpus(iter(rows), FilterParams(), None))
    kept = [k for k, _, _ in results if k]
    rejected = [r for _, r, _ in results if r]
    assert len(kept) + len(rejected) == len(rows) == 3
    assert [r.problems[0].reason for r in rejected] == ["duplicate (normalized)", "fewer than two usable segments"]


def test_split_flags_keep_shared_segments_together_at_scale():
    rows = [(f"r{i}", [f"english {i // 2}", f"french {i}"]) for i in range(2000)]
    flags = split_flags(rows, 0.1, seed=4)
    assert 180 <= flags.sum() <= 220
    for i in range(0, 2000, 2):
        assert flags[i] == flags[i + 1]


def rows(n):
    return [CorpusRow(f"r:{i}", "s", {"eng_Latn": f"Sentence number {i} about hand washing.",
                                      "fra_Latn": f"Phrase numéro {i} sur le lavage des mains.",
                                      "swh_Latn": f"Sentensi namba {i} kuhusu kunawa mikono."}) for i in range(n)]


def test_block_output_is_deterministic_and_list_tasks_stay_in_their_split():
    params = SynthesizeParams(instruction_languages={"en": 1, "zh": 1}, interactive={"per_row": 2, "task_weights": {"translate_list": 50}})
    block = rows(40)
    heldout = [i % 5 == 0 for i in range(40)]
    first = synthesize_block(block, heldout, params, ".")
    second = synthesize_block(block, heldout, params, ".")
    assert [c.to_json() for c in first.train] == [c.to_json() for c in second.train] and first.heldout == second.heldout
    heldout_ids = {r.id for r, h in zip(block, heldout) if h}
    for conversation in first.train:
        assert not set(conversation.source_ids) & heldout_ids
    for conversation in first.heldout:
        assert set(conversation.source_ids) <= heldout_ids
    assert any("translate_list" in c.turn_tasks for c in first.train)
    assert len([c for c in first.train if c.family == "translation"]) == 32 * 6


@pytest.mark.parametrize("per_row", [0, 1])
def test_interactive_per_row(per_row):
    params = SynthesizeParams(interactive={"per_row": per_row})
    result = synthesize_block(rows(5), [False] * 5, params, ".")
    assert sum(c.family == "interactive" for c in result.train) == 5 * per_row
