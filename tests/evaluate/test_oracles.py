"""The evaluate stage's library entry (`bayling.evaluate.run.evaluate_to`, what `python -m stages.evaluate`
calls) run on the SmolLM2 tokenizer with stand-in repliers whose right answers are known, on the three kinds
of test set in one run: FLORES (six directions of one multi-parallel set), WMT22 zh-en (two references) and
a held-out split synthesized from TICO-19 (twelve directions).

Every number and every file is checked against the raw test files, read by tests/oracles.py, and sacreBLEU.
The champion comparison and the gate against the base model are in tests/integration/test_oracle_registry.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from oracles import (
    FLORES_DIRECTIONS,
    FLORES_SEGMENTS,
    HELDOUT_SEGMENTS,
    REFERENCE,
    SOURCE,
    TAGGED,
    WMT_SEGMENTS,
    Evaluation,
    World,
    evaluate,
    make_world,
    read_jsonl,
    sacrebleu_scores,
)

from bayling.core.errors import PipelineError


@pytest.fixture(scope="module")
def world(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("oracle-project"), tokenizer_dir)


@pytest.fixture(scope="module")
def reference_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    return evaluate(world, tmp_path_factory.mktemp("reference-run"), final=REFERENCE, base=SOURCE)


@pytest.fixture(scope="module")
def tagged_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    return evaluate(world, tmp_path_factory.mktemp("tagged-run"), final=TAGGED, base=SOURCE)


def test_a_replier_that_answers_with_the_reference_scores_100_in_every_direction(world: World, reference_run: Evaluation):
    scored: dict[str, set[str]] = {}
    for test_set, direction, _ in reference_run.files("final"):
        scored.setdefault(test_set, set()).add(direction)
    assert scored == world.expected_directions()  # every kind in one run, with all its directions
    assert len(scored["flores"]) == 6 and len(scored["wmt22-zh-en"]) == 1 and len(scored["heldout"]) == 12
    assert len(reference_run.repliers["final"].asked) == 6 * FLORES_SEGMENTS + WMT_SEGMENTS + 12 * HELDOUT_SEGMENTS  # each once
    metrics = reference_run.metrics
    assert metrics["flores.eng_Latn-fra_Latn.segments"] == metrics["flores.avg.segments"] == FLORES_SEGMENTS
    assert metrics["wmt22-zh-en.zho_Hans-eng_Latn.segments"] == WMT_SEGMENTS and metrics["heldout.avg.segments"] == HELDOUT_SEGMENTS
    for test_set, directions in world.expected_directions().items():
        for direction in [*directions, "avg"]:
            for metric in ("bleu", "chrf", "chrf_pp"):
                assert metrics[f"{test_set}.{direction}.final.{metric}"] == pytest.approx(100.0, abs=1e-9), (test_set, direction, metric)
    for test_set, direction, path in reference_run.files("final"):
        assert all(row["hypothesis"] == " ".join(row["reference"].split()) for row in read_jsonl(path)), (test_set, direction)


def test_a_replier_that_copies_the_source_scores_what_sacrebleu_computes_from_the_raw_files(world: World,
                                                                                           reference_run: Evaluation):
    """The base model's stand-in copied each source: its scores must be sacreBLEU's on the raw files' lines,
    in every direction of every kind (held-out items are the ones the run chose, looked up in the raw split)."""
    metrics = reference_run.metrics
    for (test_set, direction), truths in world.table.ordered.items():
        if test_set == "heldout":
            chosen = [row["id"] for row in reference_run.rows("base", test_set, direction)]
            truths = [world.table.by_id[i] for i in chosen]
            assert len(chosen) == HELDOUT_SEGMENTS and all(t.direction == direction for t in truths)
        expected = sacrebleu_scores([SOURCE(t) for t in truths], [list(s) for s in zip(*(t.references for t in truths))],
                                    direction.split("-")[1])
        for metric, value in expected.items():
            assert metrics[f"{test_set}.{direction}.base.{metric}"] == pytest.approx(value, abs=1e-4), (test_set, direction, metric)


def test_a_replier_that_tags_its_outputs_lands_every_tag_in_its_own_direction(world: World, tagged_run: Evaluation):
    contents = {}
    for test_set, direction, path in tagged_run.files("final"):
        rows = read_jsonl(path)
        contents[test_set, direction] = path.read_bytes()
        tag = f"[{test_set} {direction}] "
        assert rows and all(row["hypothesis"].startswith(tag) for row in rows), (test_set, direction, rows[0]["hypothesis"][:60])
        truths = world.table.ordered[test_set, direction]
        if test_set != "heldout":  # file-based sets: the files' own lines, in order
            assert [(row["source"], row["reference"]) for row in rows] == [(t.source, t.references[0]) for t in truths]
        else:
            raw = [world.table.by_id[row["id"]] for row in rows]
            assert [(row["source"], row["reference"]) for row in rows] == [(t.source, t.references[0]) for t in raw]
            assert all(t.direction == direction for t in raw)
    assert len(set(contents.values())) == len(contents), "two direction files hold the same predictions"
    review = tagged_run.review
    listed = 0
    for entry in review["directions"]:  # a segment whose sentence chrF++ did not move is in neither list
        tag = f"[{entry['test_set']} {entry['direction']}] "
        segments = entry["regressed"] + entry["improved"]
        listed += len(segments)
        assert all(s["candidate_output"].startswith(tag) for s in segments), entry["direction"]
        assert entry["comparator"] == "base" and all(s["comparator_output"] == " ".join(s["source"].split()) for s in segments)
    assert len(review["directions"]) == 19 and listed >= 40


def test_fine_tuned_against_base_is_sacrebleus_paired_bootstrap_per_direction_and_on_the_average(world: World,
                                                                                                 reference_run: Evaluation):
    import os

    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    metrics = reference_run.metrics
    flores = world.table.ordered
    for direction in FLORES_DIRECTIONS:
        truths = flores["flores", direction]
        refs = [[t.references[0] for t in truths]]
        tokenize = "zh" if direction.endswith("zho_Hans") else "13a"
        os.environ["SACREBLEU_SEED"] = "13"
        try:
            _, results = PairedTest([("base", [SOURCE(t) for t in truths]), ("final", [REFERENCE(t) for t in truths])],
                                    {"bleu": BLEU(tokenize=tokenize), "chrf": CHRF(), "chrf_pp": CHRF(word_order=2)}, refs,
                                    test_type="bs", n_samples=200)()
        finally:
            del os.environ["SACREBLEU_SEED"]
        p_values = [results[key][1].p_value for key in results if key != "System"]
        assert [metrics[f"flores.{direction}.p_vs_base.{m}"] for m in ("bleu", "chrf", "chrf_pp")] == pytest.approx(p_values, abs=1e-6)
        change = metrics[f"flores.{direction}.final.chrf_pp"] - metrics[f"flores.{direction}.base.chrf_pp"]
        assert metrics[f"flores.{direction}.delta_low.chrf_pp"] <= change + 1e-3 <= metrics[f"flores.{direction}.delta_high.chrf_pp"] + 2e-3


def plain_average_bootstrap(world: World, directions: list[str], base, final, samples: int, seed: int):
    """The average's bootstrap the slow, plain way: in each sample, every direction's resampled segments scored by
    sacreBLEU's corpus_chrf for both models, the chrF++ changes averaged over the directions."""
    import numpy as np
    import sacrebleu

    indices = np.random.default_rng(seed).choice(FLORES_SEGMENTS, size=(samples, FLORES_SEGMENTS), replace=True)
    changes = np.zeros(samples)
    for direction in directions:
        truths = world.table.ordered["flores", direction]
        refs, ours, theirs = [t.references[0] for t in truths], [final(t) for t in truths], [base(t) for t in truths]
        for k, rows in enumerate(indices):
            def chrf_pp(outputs: list[str], rows=rows, refs=refs) -> float:
                return sacrebleu.corpus_chrf([outputs[i] for i in rows], [[refs[i] for i in rows]], word_order=2).score

            changes[k] += (chrf_pp(ours) - chrf_pp(theirs)) / len(directions)
    return changes


def plain_p_and_interval(changes, observed: float) -> tuple[float, float, float]:
    import numpy as np

    gaps = np.abs(changes)
    ordered = np.sort(changes)
    cut = len(changes) // 40
    return (int(np.sum(gaps - gaps.mean() > abs(observed))) + 1) / (len(changes) + 1), ordered[cut], ordered[len(changes) - cut - 1]


def test_the_average_over_directions_is_resampled_as_one_test(world: World, tagged_run: Evaluation):
    """The average's p and interval against a plain recomputation: in the run (all six FLORES directions, where the
    tag's cost is clear and p sits at its floor, 1/201), and on three directions where the changes are small and
    of both signs, through `average_change`."""
    from bayling.evaluate.metrics import average_change, paired_bootstrap

    metrics = tagged_run.metrics
    observed = metrics["flores.avg.final.chrf_pp"] - metrics["flores.avg.base.chrf_pp"]
    p_value, low, high = plain_p_and_interval(plain_average_bootstrap(world, FLORES_DIRECTIONS, SOURCE, TAGGED, 200, 13), observed)
    assert (metrics["flores.avg.delta_low.chrf_pp"], metrics["flores.avg.delta_high.chrf_pp"]) == pytest.approx((low, high), abs=0.02)
    assert metrics["flores.avg.p_vs_base.chrf_pp"] == pytest.approx(p_value, abs=1e-4)
    few = ["eng_Latn-fra_Latn", "eng_Latn-swh_Latn", "fra_Latn-eng_Latn"]
    results = []
    for direction in few:
        truths = world.table.ordered["flores", direction]
        results.append(paired_bootstrap([SOURCE(t) for t in truths], [TAGGED(t) for t in truths], [[t.references[0] for t in truths]],
                                        direction.split("-")[1], samples=500, seed=7))
    ours = average_change(results)
    expected = plain_p_and_interval(plain_average_bootstrap(world, few, SOURCE, TAGGED, 500, 7), ours.change("chrf_pp"))
    assert 0.02 < expected[0] < 0.9  # a p-value away from the floor and the ceiling, so the comparison means something
    assert ours.p_values["chrf_pp"] == pytest.approx(expected[0], abs=0.01)  # float32 sums: a sample or two may differ
    assert ours.intervals["chrf_pp"] == pytest.approx(expected[1:], abs=0.02)


def test_a_broken_pairing_stops_before_anything_is_written(tagged_run: Evaluation, tmp_path: Path):
    """The evaluation of b17f807: every FLORES direction given the last direction's outputs. The writer refuses it,
    names the test set and direction, and leaves the previous evaluation's files as they were."""
    import copy
    import shutil

    from bayling.evaluate.invariants import BrokenInvariant
    from bayling.evaluate.outputs import write_outputs

    out = tmp_path / "eval"
    shutil.copytree(tagged_run.out, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = copy.copy(tagged_run.result)
    broken.runs = copy.deepcopy(tagged_run.result.runs)
    flores = broken.runs["final"].predictions["flores"]
    last = flores["swh_Latn-eng_Latn"]
    for direction in flores:
        flores[direction] = last
    with pytest.raises(BrokenInvariant, match=r"test set flores, direction eng_Latn-fra_Latn: final's prediction 1 is for item "
                                              r"flores:swh_Latn-eng_Latn:1 \(swh_Latn-eng_Latn\), not for flores:eng_Latn-fra_Latn:1"):
        write_outputs(broken, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_item_ids_name_their_direction_and_a_repeated_id_is_refused(world: World):
    from bayling.evaluate.evaluation import load_test_sets

    sets = load_test_sets(world.params(), world.root, world.heldout)
    ids = [item.id for by_direction in sets.values() for items in by_direction.values() for item in items]
    assert len(ids) == len(set(ids)) and "flores:eng_Latn-fra_Latn:1" in ids and "wmt22-zh-en:zho_Hans-eng_Latn:6" in ids
    twice = [*world.heldout, world.heldout[0]]
    with pytest.raises(PipelineError, match=r"test set heldout: item id 'tico19-sample:1/eng_Latn-fra_Latn' occurs twice "
                                            r"\(in eng_Latn-fra_Latn\)"):
        load_test_sets(world.params(), world.root, twice)


def test_the_summary_the_pause_and_the_report_show_the_change_its_interval_and_p(tagged_run: Evaluation):
    import re

    from bayling.approvals.review import review_markdown
    from bayling.register.summary import render

    metrics = tagged_run.metrics
    summary = render({"eval": metrics}, [], "sqlite:///mlflow.db", 1.0)
    pause = review_markdown({"model_name": "m", "version": "2", "run_id": "r"}, metrics, "| gate |", "report.html", "uri",
                            tagged_run.review)
    number = r"([+-]?\d+\.\d+)"
    for direction in [*FLORES_DIRECTIONS, "avg"]:
        def value(model: str, direction: str = direction) -> float:
            return metrics[f"flores.{direction}.{model}.chrf_pp"]

        name = "average" if direction == "avg" else direction
        line = re.search(rf"^  {name} +{number} +{number} +{number} +\[{number}, {number}\] +(\d\.\d+)(?:   \S+ → \S+)?$", summary,
                         re.M)
        assert line, (name, summary)
        shown = [float(g) for g in line.groups()]
        expected = [value("base"), value("final"), value("final") - value("base"), value("delta_low"), value("delta_high"),
                    value("p_vs_base")]
        assert shown == pytest.approx(expected, abs=0.006), name
        cell = "**average**" if direction == "avg" else direction.replace("_", r"\_")
        row = re.search(rf"^\| {re.escape(cell)} \| {number} \| {number} \| {number} \| \[{number}, {number}\] \| (\d\.\d+) \|$", pause,
                        re.M)
        assert row and [float(g) for g in row.groups()] == pytest.approx(expected, abs=0.006), (cell, pause[:1500])
    report = (tagged_run.out / "report.html").read_text("utf-8")
    flores = report.split('data-test-set="flores"')[1].split("</table>")[0]
    for label, model in (("p vs base", "p_vs_base"), ("95% interval, low", "delta_low"), ("change vs base", "delta")):
        row = re.search(rf"<tr><td>{re.escape(label)}</td>(.*?)</tr>", flores)
        assert row and re.findall(r"<td>([^<]*)</td>", row.group(1)) == \
            [str(metrics[f"flores.avg.{model}.{m}"]) for m in ("bleu", "chrf", "chrf_pp")], label


def test_each_test_set_keeps_its_own_sacrebleu_signatures(reference_run: Evaluation):
    """FLORES into English has one reference, WMT22 zh-en two: a signature keyed by target language alone said
    nrefs:2 for FLORES too."""
    metrics = reference_run.metrics
    assert "nrefs:1|" in metrics["signature.flores.eng_Latn.bleu"] and "nrefs:2|" in metrics["signature.wmt22-zh-en.eng_Latn.bleu"]
    assert "tok:zh" in metrics["signature.flores.zho_Hans.bleu"] and "nw:2" in metrics["signature.heldout.zho_Hans.chrf_pp"]
    assert not [k for k in metrics if k.startswith("signature.") and k.count(".") != 3]


def test_the_sacrebleu_cli_recomputes_metrics_json_from_the_prediction_files(tagged_run: Evaluation, tmp_path: Path):
    """What a reader would do: take a direction's file, write its hypotheses and references out, run `sacrebleu`."""
    import subprocess
    import sys

    metrics = tagged_run.metrics
    cli = str(Path(sys.executable).parent / "sacrebleu")
    for test_set, direction, path in tagged_run.files("final"):
        if test_set != "flores":
            continue
        rows = read_jsonl(path)
        (tmp_path / "hyp").write_text("".join(r["hypothesis"] + "\n" for r in rows), "utf-8")
        (tmp_path / "ref").write_text("".join(r["reference"] + "\n" for r in rows), "utf-8")
        out = subprocess.run([cli, str(tmp_path / "ref"), "-i", str(tmp_path / "hyp"), "-m", "chrf", "--chrf-word-order", "2", "-b",
                              "-w", "4"], capture_output=True, text=True, check=True).stdout
        assert float(out) == pytest.approx(metrics[f"flores.{direction}.final.chrf_pp"], abs=0.01), direction


def test_two_directions_with_the_same_outputs_get_a_note(tagged_run: Evaluation):
    """The text-level trace of the old bug: every FLORES direction holding one direction's outputs."""
    from bayling.evaluate.invariants import identical_directions

    hypotheses = tagged_run.result.runs["final"].hypotheses()
    assert identical_directions("final", hypotheses) == []
    last = hypotheses["flores"]["swh_Latn-eng_Latn"]
    notes = identical_directions("final", {"flores": {d: last for d in FLORES_DIRECTIONS}})
    assert len(notes) == 5 and notes[0].startswith("final: flores eng_Latn-fra_Latn and fra_Latn-eng_Latn received the same 8 outputs")
    assert identical_directions("final", {"flores": {d: [""] * 8 for d in FLORES_DIRECTIONS}}) == []  # silence is not news
    # a model that copies its source answers eng->fra, eng->zho and eng->swh alike: a note, not a stop
    copied = [n for n in tagged_run.metrics["notes"] if "received the same" in n]
    assert copied and all(n.startswith("base: flores eng_Latn-") for n in copied)


def test_p_values_from_too_few_segments_are_marked_as_noise(tagged_run: Evaluation):
    from bayling.approvals.review import base_change_table
    from bayling.register.summary import change_lines

    metrics = tagged_run.metrics
    assert not any("no paired test can reach" in line for line in change_lines(metrics, "flores"))  # 8 segments
    caveat = "with 3 segments in a direction no paired test can reach p < 0.05 (6 needed): read these p-values as noise"
    assert caveat in change_lines(metrics, "heldout")[-1] and any(caveat in line for line in base_change_table(metrics, "heldout"))


def test_each_prompt_is_generated_with_its_own_budget_and_every_reference_fits_it(world: World, reference_run: Evaluation,
                                                                                  tokenizer):
    """evaluate.budget, recomputed here from the raw files: each language's token rate against English over the
    TICO-19 lines (the corpus fetch writes), each source's tokens, 1.75 and 16 tokens more, at most max_new_tokens.
    Every prompt of the three kinds was asked with exactly that budget, and every reference fits within it."""
    import math

    from oracles import TICO_LANGUAGES, tico_corpus

    lines = tico_corpus(world.root / "rates-check.jsonl")

    def tokens(texts: list[str]) -> int:
        return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])

    rate = {code: tokens(lines[code]) / tokens(lines["eng_Latn"]) for code in TICO_LANGUAGES}
    params = world.params()
    asked = reference_run.repliers["final"].budgets
    assert len(asked) == 6 * FLORES_SEGMENTS + WMT_SEGMENTS + 12 * HELDOUT_SEGMENTS
    sources_tokens = [len(ids) for ids in tokenizer([truth.source for truth, _ in asked], add_special_tokens=False)["input_ids"]]
    for (truth, budget), n in zip(asked, sources_tokens):
        source, target = truth.direction.split("-")
        expected = min(params.max_new_tokens, math.ceil(1.75 * n * rate[target] / rate[source]) + 16)
        assert budget == expected, (truth.test_set, truth.direction, truth.source[:40])
        assert all(len(tokenizer(r, add_special_tokens=False)["input_ids"]) <= budget for r in truth.references), truth
    assert {b for _, b in asked} != {params.max_new_tokens}  # the budgets differ from the flat limit
    base_budgets = [b for _, b in reference_run.repliers["base"].budgets]
    assert base_budgets == [b for _, b in asked]  # both models get the same budgets for the same prompts


def test_outputs_in_the_source_language_are_counted_per_direction_and_flagged_where_tuning_brought_them(
        world: World, reference_run: Evaluation):
    """The base stand-in copies every source, the fine-tuned one answers with the reference: langid.py places
    nearly every copy in its source language, and no reference. The same counts, with the roles swapped, make the
    note that says a direction's change measures copying; the summary shows both shares per direction."""
    from langid.langid import LanguageIdentifier, model

    from bayling.core.languages import get_language
    from bayling.evaluate.evaluation import ModelRun, source_language_notes
    from bayling.evaluate.target_language import MIN_CHARACTERS, SourceLanguageShare
    from bayling.register.summary import change_lines

    metrics = reference_run.metrics
    identifier = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    for (test_set, direction), truths in world.table.ordered.items():
        if test_set == "heldout":
            continue
        src = direction.split("-")[0]
        long_enough = [t.source for t in truths if len(t.source.strip()) >= MIN_CHARACTERS]
        expected = sum(identifier.classify(s)[0] == get_language(src).iso639_1 and identifier.classify(s)[1] >= 0.9
                       for s in long_enough) / len(long_enough)
        assert expected >= 0.75, (direction, expected)  # langid.py knows its sources
        assert metrics[f"{test_set}.{direction}.base.in_source_language"] == pytest.approx(expected, abs=1e-4), direction
        assert metrics[f"{test_set}.{direction}.final.in_source_language"] == 0.0, direction
    assert source_language_notes({"base": reference_run.result.runs["base"], "final": reference_run.result.runs["final"]}) == []
    copying = ModelRun("final", source_language={"flores": {"eng_Latn-swh_Latn": SourceLanguageShare(50, 24),
                                                            "eng_Latn-fra_Latn": SourceLanguageShare(50, 12),
                                                            "eng_Latn-zho_Hans": SourceLanguageShare(50, 30)}})
    before = ModelRun("base", source_language={"flores": {"eng_Latn-swh_Latn": SourceLanguageShare(49, 2),
                                                          "eng_Latn-fra_Latn": SourceLanguageShare(50, 10),
                                                          "eng_Latn-zho_Hans": SourceLanguageShare(50, 28)}})
    assert source_language_notes({"base": before, "final": copying}) == [
        "flores eng_Latn-swh_Latn: 24 of 50 fine-tuned outputs are in the source language (base: 2 of 49); "
        "a score change there measures copying, not translation"]  # 24% is not enough for fra, and zho was there before
    two_of_four = ModelRun("final", source_language={"heldout": {"eng_Latn-fra_Latn": SourceLanguageShare(4, 2)}})
    assert source_language_notes({"final": two_of_four}) == []  # half of four outputs is not a finding
    table = change_lines(metrics, "flores")
    assert "outputs in the source language, base → tuned" in table[0] and "in source" in table[1]
    swahili = next(line for line in table if line.strip().startswith("eng_Latn-swh_Latn"))
    share = metrics["flores.eng_Latn-swh_Latn.base.in_source_language"]
    assert swahili.endswith(f"{100 * share:.0f}% → 0%")
    flores = [d for d in reference_run.review["directions"] if d["test_set"] == "flores"]
    assert len(flores) == 6 and all(d["in_source_language"] == {
        "candidate": 0.0, "base": metrics[f"flores.{d['direction']}.base.in_source_language"]} for d in flores)
    report = (reference_run.out / "report.html").read_text("utf-8")
    assert "in the source language (base → candidate)" in report and f"<td>{100 * share:.0f}% → 0%</td>" in report
