"""Lexically constrained test sets (BayLing 1's, ictnlp/BayLing data/constrained_translation): read by path from
../shared/data (GPL-3.0 data, not copied into this Apache-2.0 repository), prompted with BayLing's constrained
wording, scored with sacreBLEU and for term usage. The oracles are tests/oracles.py's stand-in repliers; the
truth (rows, prompts, terms) is read from the raw JSONL here, never through the pipeline's own items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from oracles import EMPTY, ITEM_TERMS, REFERENCE, SHARED, Evaluation, World, evaluate, make_world, sacrebleu_scores

from bayling.config.evaluate import EvalTestSet, EvaluateParams
from bayling.core.errors import PipelineError
from bayling.evaluate.terms import term_usage, used
from bayling.evaluate.test_sets import load_test_set

DATA = SHARED / "bayling" / "data" / "constrained_translation"
EN_ZH, ZH_EN = DATA / "constraints.en-zh.zh.jsonl", DATA / "constraints.zh-en.en.jsonl"
SEGMENTS = 10  # per direction: the first ten rows of each file (no two of them share a prompt)
SETS = {  # name -> (direction, file, instruction language): one set in each instruction language
    "constrained-en-zh": ("eng_Latn-zho_Hans", EN_ZH, "en"),
    "constrained-zh-en": ("zho_Hans-eng_Latn", ZH_EN, "zh"),
}


def spec(name: str, path: Path, direction: str, **fields) -> EvalTestSet:
    return EvalTestSet(name=name, kind="constrained", direction=direction, src=str(path), **fields)


def raw_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


# --- the data ---------------------------------------------------------------------------------------------------------

# the one term of BayLing's sets cut inside a word of its reference ("António"): with word edges it is not used
CUT_INSIDE_A_WORD = ("秘书长 Ant", "联合国秘书长 António Guterres")


@pytest.mark.parametrize("path, rows, terms, missed", [(EN_ZH, 2037, 4651, 1), (ZH_EN, 1875, 3886, 0)], ids=["en-zh", "zh-en"])
def test_the_references_of_bayling_s_sets_hold_their_terms(path: Path, rows: int, terms: int, missed: int):
    """What the oracle tests rest on: a replier that answers with the reference uses its terms. Measured on the whole
    files: every row's reference contains every one of its terms as a substring (case-sensitive), and as a term is
    counted (not inside a longer Latin word) all but one, a term BayLing's files cut from the middle of a name."""
    data = raw_rows(path)
    assert len(data) == rows and sum(len(r["constraint"]) for r in data) == terms
    assert all(term in row["tgt"] for row in data for term in row["constraint"])
    misses = [(term, row["tgt"]) for row in data for term in row["constraint"] if not used(term, row["tgt"])]
    assert len(misses) == missed and all(t == CUT_INSIDE_A_WORD[0] and CUT_INSIDE_A_WORD[1] in ref for t, ref in misses)
    items = load_test_set(spec("c", path, "eng_Latn-zho_Hans" if path == EN_ZH else "zho_Hans-eng_Latn"), Path("."), None, 0)
    (group,) = items.values()
    usage = term_usage([i.terms for i in group], [" ".join(i.reference.split()) for i in group])
    assert (usage.found, usage.asked, usage.items) == (terms - missed, terms, rows)


# --- loading and the prompt -------------------------------------------------------------------------------------------

def test_items_carry_their_rows_terms_and_line_numbered_ids():
    (items,) = load_test_set(spec("constrained-en-zh", EN_ZH, "eng_Latn-zho_Hans", max_segments=5), Path("."), None, 0).values()
    rows = raw_rows(EN_ZH)[:5]
    assert [i.id for i in items] == [f"constrained-en-zh:eng_Latn-zho_Hans:{n}" for n in range(1, 6)]
    assert [(i.source, i.references, i.terms) for i in items] == [(r["src"], (r["tgt"],), tuple(r["constraint"])) for r in rows]
    assert {(i.src_lang, i.tgt_lang, i.direction) for i in items} == {("eng_Latn", "zho_Hans", "eng_Latn-zho_Hans")}


def test_the_prompt_is_bayling_s_translation_request_then_the_terms_in_either_instruction_language():
    load = lambda path, direction, **kw: next(iter(load_test_set(spec("c", path, direction, max_segments=3, **kw), Path("."),  # noqa: E731
                                                                 None, 0).values()))
    en = load(EN_ZH, "eng_Latn-zho_Hans")
    assert en[0].prompt == [{"role": "user", "content": "Provide the Chinese (Simplified) translation for this sentence: I'm sorry "
                             "that your order is running late.\nMake sure to include these words: 可能会晚, 餐可能"}]
    zh = load(ZH_EN, "zho_Hans-eng_Latn", instruction_language="zh", system_prompt="You are BayLing.")
    assert zh[2].prompt == [{"role": "system", "content": "You are BayLing."},
                            {"role": "user", "content": "提供这句话的英文翻译：又或者餐厅还要多久会准备好？可不可以帮我问下？\n"
                                                        "确保包含这些词：And how, help me, prepare it"}]


def test_a_constrained_set_needs_its_direction_and_file_and_takes_no_other_set_s_fields():
    with pytest.raises(ValueError, match="a constrained test set needs direction and src"):
        EvalTestSet(name="c", kind="constrained", src=str(EN_ZH))
    with pytest.raises(ValueError, match="remove refs"):
        EvalTestSet(name="c", kind="constrained", direction="eng_Latn-zho_Hans", src=str(EN_ZH), refs=["r.txt"])
    with pytest.raises(ValueError, match="remove directions"):
        EvalTestSet(name="c", kind="constrained", direction="eng_Latn-zho_Hans", src=str(EN_ZH), directions=["eng_Latn-zho_Hans"])


GOOD = '{"src": "Hello.", "tgt": "你好。", "constraint": ["你好"]}'


@pytest.mark.parametrize("second_line, message", [
    ('{"src": "Hi", "constraint": ["嗨"]}', "field 'tgt': missing"),
    ('{"src": "Hi", "tgt": "嗨"}', "field 'constraint': missing"),
    ('{"src": "Hi", "tgt": "嗨", "constraint": "嗨"}', "field 'constraint': a list of terms is needed, not str"),
    ('{"src": "Hi", "tgt": "嗨", "constraint": []}', "field 'constraint': no terms"),
    ('{"src": "Hi", "tgt": "嗨", "constraint": ["嗨", " "]}', r"field 'constraint': term 2 is empty"),
    ('{"src": "Hi", "tgt": "嗨", "constraint": ["嗨", 3]}', "field 'constraint': term 2 is int, not a string"),
    ('{"src": ["Hi"], "tgt": "嗨", "constraint": ["嗨"]}', "field 'src': a string is needed, not list"),
    ('{"src": "", "tgt": "嗨", "constraint": ["嗨"]}', "field 'src': empty"),
    ('{"src": "Hi" "tgt": "嗨", "constraint": ["嗨"]}', r"not JSON \(Expecting ',' delimiter at column 14\)"),
    ('{"src": "Hi", "src": "Ho", "tgt": "嗨", "constraint": ["嗨"]}', "repeated key 'src'"),
    ('["Hi", "嗨", ["嗨"]]', "a JSON object is needed, not list"),
], ids=["missing-tgt", "missing-constraint", "constraint-not-a-list", "no-terms", "empty-term", "term-not-a-string",
        "src-not-a-string", "empty-src", "invalid-json", "repeated-key", "not-an-object"])
def test_a_bad_row_is_named_by_file_line_and_field(tmp_path: Path, second_line: str, message: str):
    path = tmp_path / "terms.jsonl"
    path.write_text(f"{GOOD}\n\n{second_line}\n{GOOD}\n", "utf-8")  # the blank line 2 is skipped, and still counted
    with pytest.raises(PipelineError, match=rf"^{path}:3: {message}"):
        load_test_set(spec("c", path, "eng_Latn-zho_Hans"), Path("."), None, 0)


def test_a_file_in_another_encoding_or_empty_or_missing_is_named(tmp_path: Path):
    path = tmp_path / "gbk.jsonl"
    path.write_bytes(GOOD.encode("utf-8") + b"\n" + '{"src": "Hi", "tgt": "你好", "constraint": ["你好"]}'.encode("gbk") + b"\n")
    with pytest.raises(PipelineError, match=rf"^{path}:2: not valid UTF-8 \(byte 23 of the line\): save the file as UTF-8"):
        load_test_set(spec("c", path, "eng_Latn-zho_Hans"), Path("."), None, 0)
    (tmp_path / "empty.jsonl").write_text("\n \n")
    with pytest.raises(PipelineError, match=r"^test set c .*empty.jsonl: file is empty"):
        load_test_set(spec("c", tmp_path / "empty.jsonl", "eng_Latn-zho_Hans"), Path("."), None, 0)
    with pytest.raises(PipelineError, match=r"^test set c .*absent.jsonl: file not found"):
        load_test_set(spec("c", tmp_path / "absent.jsonl", "eng_Latn-zho_Hans"), Path("."), None, 0)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + GOOD.encode("utf-8") + b"\r\n")  # a byte-order mark and Windows line ends are fine
    (items,) = load_test_set(spec("c", bom, "eng_Latn-zho_Hans"), Path("."), None, 0).values()
    assert [(i.source, i.reference, i.terms) for i in items] == [("Hello.", "你好。", ("你好",))]


# --- term usage by hand -----------------------------------------------------------------------------------------------

# hypotheses written for the first rows of each file, and what they use of each row's terms, counted by hand
BY_HAND = {
    "constrained-en-zh": [
        ("很抱歉，您的订单可能会晚一点。", [True, False]),  # 可能会晚, 餐可能
        ("我已经查过了，您所在地区的订单量很大。", [True, False, True]),  # 我已经, 已经问过, 量很大
        ("现在有一位骑手确认他已到达餐厅。", [True, True, True]),  # 骑手确认, 到达餐厅, 确认他
    ],
    "constrained-zh-en": [
        ("Is there any way to punish him?", [True]),  # Is
        ("so that it won't happen again.", [False]),  # So: case-sensitive
        ("And how long until the restaurant is ready? Can you help me ask?", [True, True, False]),  # And how, help me, prepare it
        ("Please arrange a refund  soon.", [True, True]),  # refund soon (the doubled space collapsed), arrange a
    ],
}
HAND_TOTALS = {"constrained-en-zh": (6 / 8, (1 / 2 + 2 / 3 + 1) / 3), "constrained-zh-en": (5 / 7, (1 + 0 + 2 / 3 + 1) / 4)}


def test_term_usage_recomputed_by_hand_on_real_rows():
    for name, hypotheses in BY_HAND.items():
        direction, path, _ = SETS[name]
        rows = raw_rows(path)[: len(hypotheses)]
        assert [[used(t, h) for t in row["constraint"]] for row, (h, _) in zip(rows, hypotheses)] == [f for _, f in hypotheses]
        usage = term_usage([row["constraint"] for row in rows], [h for h, _ in hypotheses])
        assert (usage.total, usage.item_mean) == pytest.approx(HAND_TOTALS[name]), name
    # as written, and never inside a longer Latin word: the English term "I" (BayLing's sets ask for it 50 times) is
    # not found in "It", "Is" neither in "is" nor in "Island"; a Chinese edge needs no boundary
    assert not used("I", "It was late.") and used("I", "I was late.") and not used("Is", "is it?")
    assert not used("Is", "Island") and not used("App", "Apple") and used("App 与", "通过 App  与他联系")
    assert used("可能会晚", "餐可能会晚到") and used("PRS", "#PRS_ORG# account")
    with pytest.raises(PipelineError, match="term usage: item 2 asks for no term"):
        term_usage([["a"], []], ["a", "b"])


# --- the evaluation, with stand-in repliers ---------------------------------------------------------------------------

def params(segments: dict[str, int] | None = None) -> EvaluateParams:
    segments = segments or {}
    return EvaluateParams.model_validate({
        "test_sets": [{"name": name, "kind": "constrained", "direction": direction, "src": str(path),
                       "instruction_language": language, "max_segments": segments.get(name, SEGMENTS)}
                      for name, (direction, path, language) in SETS.items()],
        "generation_cache": None, "compare_with_champion": False, "bootstrap_samples": 200, "seed": 13,
    })


@pytest.fixture(scope="module")
def world(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    world = make_world(tmp_path_factory.mktemp("constrained-project"), tokenizer_dir)
    for name, (direction, path, language) in SETS.items():
        world.table.constrained(name, direction, path, SEGMENTS, language)
    return world


@pytest.fixture(scope="module")
def reference_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> Evaluation:
    return evaluate(world, tmp_path_factory.mktemp("constrained-reference"), final=REFERENCE, base=EMPTY, params=params())


def test_the_reference_uses_every_term_and_scores_100_and_the_empty_string_uses_none(reference_run: Evaluation):
    metrics = reference_run.metrics
    assert len(reference_run.repliers["final"].asked) == 2 * SEGMENTS  # every prompt the raw files give, and no other
    for name, (direction, _, _) in SETS.items():
        for where in (direction, "avg"):
            assert metrics[f"{name}.{where}.final.term_usage"] == metrics[f"{name}.{where}.final.term_usage_items"] == 1.0
            assert metrics[f"{name}.{where}.base.term_usage"] == metrics[f"{name}.{where}.base.term_usage_items"] == 0.0
            assert metrics[f"{name}.{where}.delta.term_usage"] == 1.0  # deltas come with the score keys
            for metric in ("bleu", "chrf", "chrf_pp"):
                assert metrics[f"{name}.{where}.final.{metric}"] == pytest.approx(100.0, abs=1e-9)
                assert metrics[f"{name}.{where}.base.{metric}"] == 0.0
        assert metrics[f"{name}.{direction}.segments"] == SEGMENTS
        rows = reference_run.rows("final", name, direction)
        assert all(row["terms_found"] == [True] * len(row["terms"]) for row in rows)
        assert not any(any(row["terms_found"]) for row in reference_run.rows("base", name, direction))
    assert "heldout.avg.final.term_usage" not in metrics and not any(k.startswith("flores.") for k in metrics)


def test_outputs_tagged_with_their_item_land_each_in_its_own_place(world: World, tmp_path: Path):
    run = evaluate(world, tmp_path / "eval", final=ITEM_TERMS, base=REFERENCE, params=params())
    metrics = run.metrics
    for name, (direction, _, _) in SETS.items():
        rows = run.rows("final", name, direction)
        truths = world.table.ordered[name, direction]
        assert [row["id"] for row in rows] == [t.id for t in truths] == [f"{name}:{direction}:{n}" for n in range(1, SEGMENTS + 1)]
        assert all(row["hypothesis"].startswith(f"<{row['id']}> ") for row in rows)
        assert [(row["source"], row["reference"], tuple(row["terms"])) for row in rows] == [(t.source, t.references[0], t.terms)
                                                                                          for t in truths]
        assert metrics[f"{name}.{direction}.final.term_usage"] == 1.0  # its own terms, so each landed on its own item
        expected = sacrebleu_scores([ITEM_TERMS(t) for t in truths], [[t.references[0] for t in truths]], direction.split("-")[1])
        for metric, value in expected.items():
            assert metrics[f"{name}.{direction}.final.{metric}"] == pytest.approx(value, abs=1e-4), (name, metric)


def test_term_usage_by_hand_through_the_evaluation(world: World, tmp_path: Path):
    """The hand-counted hypotheses above, answered by a stand-in for the fine-tuned model: metrics.json holds the
    hand-computed rates per direction and their mean over the set's one direction under `avg`."""
    answers = {(name, i): h for name, hypotheses in BY_HAND.items() for i, (h, _) in enumerate(hypotheses)}
    by_hand = lambda t: answers[t.test_set, int(t.id.rsplit(":", 1)[1]) - 1]  # noqa: E731
    run = evaluate(world, tmp_path / "eval", final=by_hand, base=REFERENCE,
                   params=params({name: len(h) for name, h in BY_HAND.items()}))
    metrics = run.metrics
    for name, (total, items) in HAND_TOTALS.items():
        direction = SETS[name][0]
        for where in (direction, "avg"):
            assert metrics[f"{name}.{where}.final.term_usage"] == round(total, 4)
            assert metrics[f"{name}.{where}.final.term_usage_items"] == round(items, 4)
            assert metrics[f"{name}.{where}.delta.term_usage"] == round(round(total, 4) - 1.0, 4)
        assert [row["terms_found"] for row in run.rows("final", name, direction)] == [f for _, f in BY_HAND[name]]


def test_term_usage_shows_beside_the_other_scores_and_the_gate_takes_its_keys(reference_run: Evaluation):
    import csv

    from bayling.config.register import GateParams
    from bayling.register.gate import evaluate_gate

    with open(reference_run.out / "per_language.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["test_set"], r["direction"]) for r in rows] == [(n, d) for n, (d, _, _) in SETS.items()]
    assert all((r["final_term_usage"], r["final_term_usage_items"], r["base_term_usage"]) == ("1.0", "1.0", "0.0") for r in rows)
    report = (reference_run.out / "report.html").read_text("utf-8")
    assert "<th>final term usage</th>" in report and "<th>term usage (mean per item)</th>" in report
    averages = report.split('data-test-set="constrained-zh-en"')[1].split("</table>")[0]
    assert "<tr><td>fine-tuned</td><td>100.0</td><td>100.0</td><td>100.0</td><td>1.0</td><td>1.0</td></tr>" in averages
    gate = GateParams(min_scores={"constrained-en-zh.eng_Latn-zho_Hans.final.term_usage": 0.9,
                                  "constrained-zh-en.avg.base.term_usage_items": 0.5},
                      max_drop_vs_champion=None, max_drop_vs_base=None)
    results = {r.target: r for r in evaluate_gate(reference_run.metrics, gate)}
    assert results["constrained-en-zh.eng_Latn-zho_Hans.final.term_usage"].passed
    refused = results["constrained-zh-en.avg.base.term_usage_items"]
    assert (refused.passed, refused.value, refused.threshold) == (False, 0.0, 0.5)


def test_the_champion_s_outputs_get_their_term_usage_too(reference_run: Evaluation):
    """The champion's outputs come from the registry (tests/integration/test_oracle_registry.py runs that path); its
    term usage is counted from them as the two models' are, on the constrained sets alone."""
    from bayling.evaluate.evaluation import outputs_term_usage

    sets = reference_run.result.test_sets
    first_terms = {name: {d: [" ".join(i.terms[:1]) for i in items] for d, items in by_d.items()} for name, by_d in sets.items()}
    metrics = outputs_term_usage("champion", sets, first_terms)  # each output uses its item's first term only
    for name, (direction, path, _) in SETS.items():
        rows = raw_rows(path)[:SEGMENTS]
        asked = [len(r["constraint"]) for r in rows]
        # in these rows no other term is part of the first one, so each output uses exactly one of its item's terms
        assert metrics[f"{name}.{direction}.champion.term_usage"] == round(len(rows) / sum(asked), 4)
        assert metrics[f"{name}.avg.champion.term_usage_items"] == round(sum(1 / n for n in asked) / len(rows), 4)
    assert outputs_term_usage("champion", sets, {}) == {}


def test_an_item_whose_prompt_lacks_one_of_its_terms_breaks_the_invariants(reference_run: Evaluation):
    """The invariants evaluate checks before writing anything: a constrained item's prompt names each of its terms."""
    import dataclasses

    from bayling.evaluate.invariants import BrokenInvariant, check_items

    sets = reference_run.result.test_sets
    items = sets["constrained-en-zh"]["eng_Latn-zho_Hans"]
    bare = dataclasses.replace(items[0], terms=(*items[0].terms, "不在提示里"))
    with pytest.raises(BrokenInvariant, match=r"item 1 \(constrained-en-zh:eng_Latn-zho_Hans:1\): its prompt does not name all "
                                              "of its terms"):
        check_items({"constrained-en-zh": {"eng_Latn-zho_Hans": [bare, *items[1:]]}})
    check_items(sets)  # the run's own items hold
