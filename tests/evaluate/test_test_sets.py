from pathlib import Path

import pytest

from bayling.config.evaluate import EvalTestSet
from bayling.core.errors import PipelineError
from bayling.core.records import Conversation
from bayling.evaluate.test_sets import heldout_items, load_test_set

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def chat(i, src="eng_Latn", tgt="fra_Latn", task="translate"):
    return Conversation.from_json({
        "id": f"r{i}/{src}-{tgt}",
        "messages": [{"role": "user", "content": f"Provide the French translation for this sentence: s{i}"},
                     {"role": "assistant", "content": f"p{i}"}],
        "meta": {"task": task, "src_lang": src, "tgt_lang": tgt, "source_ids": [f"r{i}"]},
    })


def test_heldout_items_are_seeded_and_capped():
    chats = [chat(i) for i in range(20)] + [chat(i, "fra_Latn", "eng_Latn") for i in range(5)] + [chat(99, task="interactive")]
    items = heldout_items(chats, None, 8, seed=1)
    assert sorted(items) == ["eng_Latn-fra_Latn", "fra_Latn-eng_Latn"]
    assert len(items["eng_Latn-fra_Latn"]) == 8 and len(items["fra_Latn-eng_Latn"]) == 5
    assert items == heldout_items(chats, None, 8, seed=1) and items != heldout_items(chats, None, 8, seed=2)
    assert items["eng_Latn-fra_Latn"][0].references == (items["eng_Latn-fra_Latn"][0].reference,)


def test_wmt_test_set_uses_bayling_prompt_and_all_references():
    spec = EvalTestSet(name="wmt22-zh-en", kind="wmt", direction="zho_Hans-eng_Latn", src=str(SHARED / "wmt22/zh-en/src.txt"),
                       refs=[str(SHARED / "wmt22/zh-en/refA.txt"), str(SHARED / "wmt22/zh-en/refB.txt")], max_segments=5)
    (direction, items), = load_test_set(spec, Path("."), None, 0).items()
    assert direction == "zho_Hans-eng_Latn" and len(items) == 5
    assert items[0].prompt[-1]["content"].startswith("Provide the English translation for this sentence: ")
    assert len(items[0].references) == 2


def test_flores_test_set_names_languages(flores_dir: Path):
    spec = EvalTestSet(name="flores", kind="flores", dir=str(flores_dir / "devtest"), directions=["eng_Latn-swh_Latn", "swh_Latn-eng_Latn"],
                       max_segments=3, instruction_language="zh")
    items = load_test_set(spec, Path("."), None, 0)
    assert sorted(items) == ["eng_Latn-swh_Latn", "swh_Latn-eng_Latn"]
    first = items["eng_Latn-swh_Latn"][0]
    assert first.prompt[-1]["content"].startswith("提供这句话的斯瓦希里文翻译：")
    assert items["swh_Latn-eng_Latn"][0].reference == first.source


def test_bad_test_set_files_are_named(tmp_path: Path):
    (tmp_path / "src.txt").write_text("a\nb\n")
    (tmp_path / "ref.txt").write_text("a\n")
    spec = EvalTestSet(
        name="bad", kind="wmt", direction="eng_Latn-fra_Latn", src=str(tmp_path / "src.txt"), refs=[str(tmp_path / "ref.txt")]
    )
    with pytest.raises(PipelineError, match="src.txt has 2 lines but .*ref.txt has 1"):
        load_test_set(spec, Path("."), None, 0)


def test_the_default_headline_is_flores_from_the_shipped_archive(tmp_path: Path):
    from bayling.config.loader import load_section

    root = Path(__file__).resolve().parents[2]
    evaluate = load_section("evaluate", root / "params.yaml")
    headline = evaluate.test_sets[0]
    assert headline.kind == "flores" and headline.archive
    items = load_test_set(headline, root, None, 0)
    assert len(items) == 6 and all(len(v) == headline.max_segments for v in items.values())
    first = items["eng_Latn-swh_Latn"][0]
    assert first.source.startswith("\"We now have 4-month-old mice that are non-diabetic")
    assert items["swh_Latn-eng_Latn"][0].reference == first.source
    assert (root / ".cache/unpacked").is_dir()  # unpacked into the ignored cache, never next to the archive
    assert not list((root / "data/sample/flores200").glob("*.devtest")) and not (root / "data/sample/flores200/devtest").exists()


def test_evaluate_scores_the_segments_the_shared_reader_gives():
    """Evaluate, decontamination and the tokenizer audit read test sets through bayling.core.test_sets: evaluate's
    items are the reader's segments, line for line, up to max_segments."""
    from bayling.config.loader import load_section
    from bayling.core.test_sets import direction_texts

    root = Path(__file__).resolve().parents[2]
    headline = load_section("evaluate", root / "params.yaml").test_sets[0]
    items = load_test_set(headline, root, None, 0)
    texts = {t.direction: t for t in direction_texts(headline, root)}
    assert list(items) == list(texts) == list(headline.directions)
    for direction, direction_items in items.items():
        assert [i.source for i in direction_items] == texts[direction].sources[: headline.max_segments]
        assert [i.references for i in direction_items] == [(ref,) for ref in texts[direction].references[0][: headline.max_segments]]
        assert [i.id for i in direction_items] == [f"flores:{direction}:{n}" for n in range(1, headline.max_segments + 1)]
