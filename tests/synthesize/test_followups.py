import random

import pytest

from bayling.config.synthesize import DATA_TASKS, INTERACTIVE_TASKS, TEACHER_TASKS
from bayling.core.records import CorpusRow
from bayling.synthesize.followups import (
    TASKS,
    Skipped,
    TaskContext,
    Turn,
    back_translate,
    compare_candidates,
    constrained,
    content_words,
    correct_draft,
    corrupt,
    identify_language,
    length_in_units,
    length_limit,
    multi_target,
    phrasings,
    pivot,
    translate_list,
)

ROW = CorpusRow(
    "c:1",
    "c",
    {
        "eng_Latn": "Wash your hands with soap for 20 seconds.",
        "fra_Latn": "Lavez-vous les mains avec du savon pendant 20 secondes.",
        "swh_Latn": "Nawa mikono yako kwa sabuni kwa sekunde 20.",
        "zho_Hans": "用肥皂洗手20秒。",
    },
)
NEIGHBOURS = [
    ROW,
    CorpusRow("c:2", "c", {"eng_Latn": "Stay at home.", "fra_Latn": "Restez chez vous.", "zho_Hans": "待在家里。"}),
    CorpusRow("c:3", "c", {"eng_Latn": "Wear a mask.", "fra_Latn": "Portez un masque.", "swh_Latn": "Vaa barakoa."}),
]


def ctx(seed=0, src="eng_Latn", current="fra_Latn", lang="en", row=ROW, neighbours=NEIGHBOURS, teacher=False):
    return TaskContext(row, src, current, lang, random.Random(seed), neighbours, teacher)


def turns(task, n=20, **kw):
    return [task(ctx(seed=s, **kw)) for s in range(n)]


def test_catalogue_has_at_least_eight_data_tasks():
    assert tuple(TASKS) == INTERACTIVE_TASKS
    assert len(DATA_TASKS) >= 8 and set(TEACHER_TASKS) < set(TASKS)
    for lang in ("en", "zh"):
        for task in INTERACTIVE_TASKS:
            assert len(phrasings()[lang][task]) >= 2, (lang, task)


def test_pivot_answers_with_the_third_languages_reference():
    for turn in turns(pivot):
        assert turn.new_current in ("swh_Latn", "zho_Hans")
        assert turn.assistant == ROW.texts[turn.new_current]
        assert turn.response_langs == (turn.new_current,)
    assert pivot(ctx(row=CorpusRow("b", "c", {"eng_Latn": "a", "fra_Latn": "b"}))) == Skipped("pivot", "the row has no third language")


def test_back_translation_is_the_source():
    turn = back_translate(ctx(src="zho_Hans", current="swh_Latn"))
    assert turn.assistant == ROW.texts["zho_Hans"] and "Chinese (Simplified)" in turn.user


@pytest.mark.parametrize("current", ["fra_Latn", "zho_Hans"])
def test_constrained_revision_contains_its_words(current):
    for turn in turns(constrained, current=current):
        words = turn.checks["must_include"]
        assert 1 <= len(words) <= 3
        assert turn.assistant == ROW.texts[current]
        assert all(w in turn.assistant and w in turn.user for w in words)


def test_length_limit_is_respected():
    for current in ("fra_Latn", "zho_Hans"):
        for turn in turns(length_limit, current=current):
            limit = turn.checks["max_units"]
            assert str(limit) in turn.user
            assert length_in_units(turn.assistant, current) <= limit
    assert length_in_units("用肥皂洗手20秒。", "zho_Hans") == 6
    assert length_in_units("Wash your hands, now!", "eng_Latn") == 4


def test_correct_draft_plants_one_error_and_answers_with_the_reference():
    kinds = set()
    for turn in turns(correct_draft, n=40):
        draft = turn.checks["draft"]
        assert draft != ROW.texts["fra_Latn"] and draft in turn.user
        assert turn.assistant.endswith(ROW.texts["fra_Latn"])
    for seed in range(40):
        kinds.add(corrupt(ROW.texts["eng_Latn"], "eng_Latn", random.Random(seed)).kind)
    assert kinds == {"swap", "drop", "duplicate", "digit"}


def test_digit_corruption_is_explained_with_both_numbers():
    for seed in range(30):
        c = corrupt("Il y a 20 cas.", "fra_Latn", random.Random(seed))
        if c.kind == "digit":
            assert (c.x, c.y) == ("21", "20") and c.text == "Il y a 21 cas."
            break
    else:
        pytest.fail("no digit corruption drawn")


def test_translate_list_uses_rows_with_the_pair_only():
    turn = translate_list(ctx(src="eng_Latn", current="fra_Latn"))
    assert set(turn.source_ids) == {"c:2", "c:3"}
    for i, rid in enumerate(turn.source_ids, 1):
        row = next(r for r in NEIGHBOURS if r.id == rid)
        assert f"{i}. {row.texts['eng_Latn']}" in turn.user
        assert f"{i}. {row.texts['fra_Latn']}" in turn.assistant
    assert isinstance(translate_list(ctx(src="swh_Latn", current="zho_Hans")), Skipped)


def test_compare_candidates_prefers_the_reference():
    for turn in turns(compare_candidates, n=30):
        better = turn.checks["better"]
        line = next(l for l in turn.user.splitlines() if l.startswith(f"{better}:"))
        assert line == f"{better}: {ROW.texts['fra_Latn']}"
        assert turn.assistant.startswith(("Translation " + better, better))


def test_multi_target_gives_both_references():
    turn = multi_target(ctx(src="eng_Latn", current="fra_Latn"))
    assert turn.response_langs == ("swh_Latn", "zho_Hans")
    assert turn.assistant.splitlines() == [f"Swahili: {ROW.texts['swh_Latn']}", f"Chinese (Simplified): {ROW.texts['zho_Hans']}"]


def test_identify_language_names_the_source_in_the_instruction_language():
    assert "Swahili" in identify_language(ctx(src="swh_Latn")).assistant
    assert "斯瓦希里文" in identify_language(ctx(src="swh_Latn", lang="zh")).assistant


def test_teacher_tasks_skip_without_teacher_and_ask_with_it():
    for name in TEACHER_TASKS:
        result = TASKS[name](ctx())
        assert isinstance(result, Skipped) and "teacher" in result.reason
        turn = TASKS[name](ctx(teacher=True))
        assert isinstance(turn, Turn) and turn.assistant is None and turn.teacher_messages
        assert ROW.texts["fra_Latn"] in turn.teacher_messages[-1][1]


def test_content_words():
    assert content_words("Wash your hands, with soap!", "eng_Latn") == ["Wash", "your", "hands", "with", "soap"]
    assert content_words("用肥皂洗手20秒。", "zho_Hans") == ["用肥", "皂洗"]
