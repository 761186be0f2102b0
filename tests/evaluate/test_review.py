"""The review a person decides on: segments ranked by sentence chrF++ against the right comparator, the
top k each way, escaped wherever it is shown, and the same bytes every time."""

from __future__ import annotations

import json
import random

import pytest

from bayling.approvals.review import MAX_CELL, markdown_cell, review_markdown
from bayling.evaluate.report import render_html
from bayling.evaluate.review import build_review, rank_segments, review_direction, sentence_chrf_pp, write_review
from bayling.evaluate.test_sets import TestItem as Segment  # not Test*: pytest would try to collect it
from bayling.register.tables import directions_table, segments_table

DIRECTION = "eng_Latn-fra_Latn"
REFERENCES = [
    "le chat dort sur le canapé",
    "il pleut depuis trois jours",
    "nous partirons demain matin",
    "la réunion commence à midi",
    "elle lit un livre chaque soir",
    "le train est en retard",
    "les enfants jouent dans le parc",
    "je voudrais un café noir",
]


def item(n: int, reference: str, source: str | None = None) -> Segment:
    return Segment(f"seg-{n:02d}", DIRECTION, "eng_Latn", "fra_Latn", [], source or f"source {n}", (reference,))


ITEMS = [item(n, ref) for n, ref in enumerate(REFERENCES)]


def metrics_for(champion: bool) -> dict:
    metrics = {f"flores.{DIRECTION}.final.{m}": v for m, v in (("bleu", 20.0), ("chrf", 50.0), ("chrf_pp", 48.0))}
    metrics.update({f"flores.{DIRECTION}.base.{m}": v for m, v in (("bleu", 10.0), ("chrf", 40.0), ("chrf_pp", 38.0))})
    if champion:
        metrics["champion_version"] = 3
        metrics.update({f"flores.{DIRECTION}.champion.{m}": v for m, v in (("bleu", 21.0), ("chrf", 51.0), ("chrf_pp", 49.0))})
        metrics.update({f"flores.{DIRECTION}.p_vs_champion.{m}": v for m, v in (("bleu", 0.62), ("chrf", 0.71), ("chrf_pp", 0.69))})
    return metrics


def test_segments_rank_by_sentence_chrf_pp_change_and_unchanged_ones_are_neither():
    # candidate: exact on 0 and 1, a word wrong on 2, garbage on 3; comparator the other way round; 4 identical
    candidate = [REFERENCES[0], REFERENCES[1], "nous partirons demain soir", "xyz", REFERENCES[4]]
    comparator = ["xyz", "il pleut depuis deux jours", REFERENCES[2], REFERENCES[3], REFERENCES[4]]
    regressed, improved = rank_segments(ITEMS[:5], candidate, comparator)
    assert [s.id for s in regressed] == ["seg-03", "seg-02"]  # the bigger drop first
    assert [s.id for s in improved] == ["seg-00", "seg-01"]
    assert "seg-04" not in {s.id for s in regressed + improved}
    worst = regressed[0]
    assert worst.candidate_output == "xyz" and worst.comparator_output == REFERENCES[3] and worst.reference == REFERENCES[3]
    assert worst.comparator_chrf_pp == sentence_chrf_pp(REFERENCES[3], [REFERENCES[3]]) == 100.0
    assert worst.delta == round(worst.candidate_chrf_pp - worst.comparator_chrf_pp, 4) < 0
    assert improved[0].delta > improved[1].delta > 0


def test_at_most_k_each_way_and_equal_changes_go_by_id():
    items = [item(n, "le chat dort") for n in (7, 3, 5, 1, 6, 2, 4, 0)]  # ids out of order, all the same change
    regressed, improved = rank_segments(items, ["zzz"] * 8, ["le chat dort"] * 8, k=5)
    assert [s.id for s in regressed] == ["seg-00", "seg-01", "seg-02", "seg-03", "seg-04"]
    assert improved == []
    _, improved = rank_segments(items, ["le chat dort"] * 8, ["zzz"] * 8, k=3)
    assert [s.id for s in improved] == ["seg-00", "seg-01", "seg-02"]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 items, 1 candidate outputs"):
        rank_segments(ITEMS[:2], ["a"], ["a", "b"])


def test_the_champion_is_the_comparator_when_there_is_one_else_the_base_model():
    candidate, champion, base = list(REFERENCES), ["zzz"] * 8, ["le"] * 8
    with_champion = review_direction("flores", DIRECTION, ITEMS, candidate, champion, base, metrics_for(True))
    assert with_champion.comparator == "champion" and with_champion.comparator_label == "vs champion v3"
    assert {s.comparator_output for s in with_champion.improved} == {"zzz"}
    assert with_champion.scores["champion"] == {"bleu": 21.0, "chrf": 51.0, "chrf_pp": 49.0}
    assert with_champion.p_vs_champion == {"bleu": 0.62, "chrf": 0.71, "chrf_pp": 0.69}

    without = review_direction("flores", DIRECTION, ITEMS, candidate, None, base, metrics_for(False))
    assert without.comparator == "base" and without.comparator_label == "vs base (no champion)"
    assert {s.comparator_output for s in without.improved} == {"le"} and len(without.improved) == 5
    assert without.scores["champion"] is None and without.p_vs_champion is None
    assert without.scores["base"] == {"bleu": 10.0, "chrf": 40.0, "chrf_pp": 38.0}

    neither = review_direction("flores", DIRECTION, ITEMS, candidate, None, None, metrics_for(False))
    assert neither.comparator is None and neither.regressed == [] == neither.improved

    # a champion that exists but was not compared must not be reported as missing
    switched_off = review_direction("flores", DIRECTION, ITEMS, candidate, None, base, metrics_for(False),
                                    absence="champion comparison off")
    assert switched_off.comparator_label == "vs base (champion comparison off)"


def test_build_review_falls_back_per_direction_and_writes_the_same_bytes_every_time(tmp_path):
    other = "eng_Latn-swh_Latn"
    swh = [Segment(f"swh-{n}", other, "eng_Latn", "swh_Latn", [], f"src {n}", (f"ref {n}",)) for n in range(3)]
    test_sets = {"flores": {DIRECTION: ITEMS, other: swh}}
    candidate = {"flores": {DIRECTION: ["zzz"] * 8, other: ["ref 0", "ref 1", "ref 2"]}}
    champion = {"flores": {DIRECTION: list(REFERENCES)}}  # the champion has no outputs for eng-swh
    base = {"flores": {DIRECTION: ["le"] * 8, other: ["x", "y", "z"]}}
    review = build_review(test_sets, candidate, champion, base, metrics_for(True))
    by_direction = {d["direction"]: d for d in review["directions"]}
    assert [d["direction"] for d in review["directions"]] == sorted(by_direction)
    assert by_direction[DIRECTION]["comparator"] == "champion" and len(by_direction[DIRECTION]["regressed"]) == 5
    assert by_direction[other]["comparator"] == "base"
    assert by_direction[other]["comparator_label"] == "vs base (champion has no outputs here)"
    assert review["k"] == 5 and review["champion_version"] == 3

    write_review(tmp_path / "a.json", review)
    shuffled_items = dict(reversed(list(test_sets["flores"].items())))
    write_review(tmp_path / "b.json", build_review({"flores": shuffled_items}, candidate, champion, base, metrics_for(True)))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert json.loads((tmp_path / "a.json").read_text("utf-8")) == review


def hostile_review() -> dict:
    nasty = "<script>alert('x')</script> | a **bold** [link](http://x) `code` _it_\nsecond line"
    items = [item(0, "le chat", nasty), item(1, "le chien", "x" * 500)]
    return build_review({"flores": {DIRECTION: items}}, {"flores": {DIRECTION: [nasty, "le chien"]}},
                        {"flores": {DIRECTION: ["le chat", "y" * 500]}}, None, metrics_for(True))


def test_the_html_review_escapes_everything_and_keeps_the_other_sections():
    page = render_html(metrics_for(True) | {"notes": ["a <b>note</b>"]}, [], [], ["final"], hostile_review())
    section = page[page.index('<section id="review">'):page.index("</section>")]
    assert "<h2>Review per direction</h2>" in section
    assert section.count('<table class="segments"') == 2
    assert '<table class="segments" data-kind="regressed">' in section and "seg-00" in section
    assert '<table class="segments" data-kind="improved">' in section and "seg-01" in section
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in section
    assert "vs champion v3" in section and "0.69" in section  # the p-value of chrF++ against the champion
    assert "<h2>Per direction</h2>" in page and "<h2>Notes</h2>" in page and "a &lt;b&gt;note&lt;/b&gt;" in page


def test_the_html_review_says_when_nothing_was_reviewed():
    page = render_html({}, [], [], [], None)
    assert '<section id="review">' in page and "No translation directions were reviewed" in page


def test_markdown_cells_stay_in_their_cell_and_are_cut():
    cell = markdown_cell("a | b *c* [d](e) <f> `g` _h_ \\ ~i~\nj")
    assert "\n" not in cell and "|" not in cell.replace("\\|", "")
    assert cell == "a \\| b \\*c\\* \\[d\\](e) \\<f\\> \\`g\\` \\_h\\_ \\\\ \\~i\\~ j"
    long = markdown_cell("word " * 100)
    assert long.endswith("…") and len(long) <= MAX_CELL


def test_the_pause_shows_the_per_direction_table_and_the_segments():
    registration = {"model_name": "m", "version": "4", "run_id": "r1"}
    text = review_markdown(registration, metrics_for(True), "| rule |\n|---|", "reports/eval/report.html", "http://mlflow",
                           hostile_review())
    assert "### Per direction" in text and "| candidate chrF++ | champion chrF++ | base chrF++ | p chrF++ |" in text
    row = next(line for line in text.splitlines() if line.startswith("| flores |"))
    assert "48.00 | 49.00 | 38.00 | 0.6900 | 0.6200" in row
    assert "1 most regressed vs champion v3" in text and "1 most improved vs champion v3" in text
    # every row of a segments table has as many cells as its header: nothing in a segment broke the table
    for line in text.splitlines():
        if line.startswith("| ") and ("(" in line and "." in line) and line.count(" | ") >= 4:
            assert line.replace("\\|", "").count("|") == 6, line
    assert "<script>" not in text and "x" * (MAX_CELL + 1) not in text and "x" * (MAX_CELL - 1) + "…" in text
    assert "### Gate" in text and "tools.approve 4" in text
    # without a review the pause still renders, as before
    assert "### Per direction" not in review_markdown(registration, metrics_for(False), "", "r", "u")


def test_mlflow_tables_have_a_row_per_direction_and_per_moved_segment():
    review = hostile_review()
    directions = directions_table(review)
    assert directions["direction"] == [DIRECTION] and directions["p_vs_champion_chrf_pp"] == [0.69]
    assert directions["base_bleu"] == [10.0] and directions["compared_with"] == ["vs champion v3"]
    no_champion = build_review({"flores": {DIRECTION: ITEMS}}, {"flores": {DIRECTION: list(REFERENCES)}}, None,
                               {"flores": {DIRECTION: ["le"] * 8}}, metrics_for(False))
    assert directions_table(no_champion)["champion_chrf_pp"] == [None]
    assert set(segments_table(no_champion)["compared_with"]) == {"vs base (no champion)"}
    segments = segments_table(review)
    assert len({len(column) for column in segments.values()}) == 1
    assert segments["change"] == ["regressed", "improved"] and segments["id"] == ["seg-00", "seg-01"]
    assert segments["rank"] == [1, 1]


def test_ranking_is_stable_under_input_order():
    rng = random.Random(7)
    order = list(range(8))
    rng.shuffle(order)
    items = [ITEMS[i] for i in order]
    outputs = [REFERENCES[i] if i % 2 else "zzz" for i in order]
    first = rank_segments(items, outputs, ["le"] * 8, k=8)
    again = rank_segments(list(reversed(items)), list(reversed(outputs)), ["le"] * 8, k=8)
    assert first == again


def test_the_pause_form_lists_segments_only_for_the_directions_that_lost_most():
    from bayling.approvals.review import MAX_SEGMENT_DIRECTIONS, review_tables

    def direction(i: int) -> dict:
        segment = {"delta": -float(i), "source": f"src {i}", "reference": "ref", "comparator_output": "a", "candidate_output": "b",
                   "comparator_chrf_pp": 50.0, "candidate_chrf_pp": 50.0 - i}
        return {"test_set": "flores", "direction": f"eng_Latn-x{i:03d}_Latn", "segments": 8, "scores": {}, "comparator": "champion",
                "comparator_label": "vs champion v1", "regressed": [segment], "improved": []}

    text = "\n".join(review_tables({"directions": [direction(i) for i in range(1, 41)]}))
    assert text.count("\n| flores |") == 40  # every direction keeps its row in the score table
    assert text.count("most regressed") == MAX_SEGMENT_DIRECTIONS
    assert "src 40" in text and "src 1 " not in text and "all 40 are in report.html" in text
