import csv
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

from bayling.core.errors import PipelineError
from bayling.core.test_sets import read_segments
from bayling.evaluate.metrics import (
    ReferenceScorer,
    capability_ratios,
    macro_average,
    paired_bootstrap,
    score_corpus,
    score_files,
)

WMT_TARGET = {"zh-en": "eng_Latn", "en-zh": "zho_Hans", "de-en": "eng_Latn", "en-de": "deu_Latn"}
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def official():
    with open(SHARED / "wmt22" / "automatic-scores.tsv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["pair"] in WMT_TARGET]
    table = {(r["pair"], r["system"], r["metric"]): float(r["score"]) for r in rows}
    systems = sorted({(r["pair"], r["system"]) for r in rows})
    return table, systems


TABLE, SYSTEMS = official()


@functools.lru_cache(maxsize=2)  # the current pair's two reference sets (SYSTEMS is sorted by pair): about 500 MB
def scorer(pair: str, refs: tuple[str, ...]) -> ReferenceScorer:
    return ReferenceScorer([read_segments(SHARED / "wmt22" / pair / ref) for ref in refs], WMT_TARGET[pair])


FIRST_OF_PAIR = {pair: min(s for p, s in SYSTEMS if p == pair) for pair, _ in SYSTEMS}


@pytest.mark.parametrize("pair, system", SYSTEMS, ids=[f"{p}/{s}" for p, s in SYSTEMS])
def test_every_wmt22_system_matches_the_official_scores(pair, system):
    """Each system scored against the pair's references (extracted once per reference set and test process, as an
    evaluation scores several models against one set); the pair's first system also through `score_files`."""
    folder = SHARED / "wmt22" / pair
    hypotheses = read_segments(folder / f"sys-{system}.txt")
    single = scorer(pair, ("refA.txt",)).score(hypotheses)
    both = scorer(pair, ("refB.txt", "refA.txt")).score(hypotheses)
    if system == FIRST_OF_PAIR[pair]:
        assert score_files(folder / f"sys-{system}.txt", [folder / "refA.txt"], WMT_TARGET[pair]) == single
        assert score_files(folder / f"sys-{system}.txt", [folder / "refB.txt", folder / "refA.txt"], WMT_TARGET[pair]) == both
    assert f"{single.bleu:.2f}" == f"{TABLE[(pair, system, 'bleu-A')]:.2f}"
    assert f"{single.chrf:.2f}" == f"{TABLE[(pair, system, 'chrf-A')]:.2f}"
    assert f"{both.bleu:.2f}" == f"{TABLE[(pair, system, 'bleu-all')]:.2f}"
    assert f"{both.chrf:.2f}" == f"{TABLE[(pair, system, 'chrf-all')]:.2f}"
    assert ("tok:zh" if pair.endswith("zh") else "tok:13a") in single.signatures["bleu"]


def test_chrf_pp_is_word_order_two():
    hyps, refs = ["the cat sat on the mat"], ["the cat is on the mat"]
    scores = score_corpus(hyps, [refs], "eng_Latn")
    assert scores.chrf_pp == sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score
    assert "nw:2" in scores.signatures["chrf_pp"] and "nw:0" in scores.signatures["chrf"]


def test_macro_average():
    a = score_corpus(["a b c d"], [["a b c d"]], "eng_Latn")
    b = score_corpus(["x y"], [["a b c d"]], "eng_Latn")
    assert macro_average([a, b])["chrf"] == pytest.approx((a.chrf + b.chrf) / 2)


def test_bad_files_get_clear_errors(tmp_path: Path):
    (tmp_path / "hyp.txt").write_text("a\nb\n")
    (tmp_path / "ref.txt").write_text("a\nb\nc\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank_ref.txt").write_text("\n\n\n")
    (tmp_path / "latin1.txt").write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(PipelineError, match=r"hypothesis .*hyp.txt has 2 lines, reference .*ref.txt has 3"):
        score_files(tmp_path / "hyp.txt", [tmp_path / "ref.txt"], "eng_Latn")
    with pytest.raises(PipelineError, match="empty.txt: file is empty"):
        score_files(tmp_path / "empty.txt", [tmp_path / "ref.txt"], "eng_Latn")
    with pytest.raises(PipelineError, match="reference .*blank_ref.txt: file is empty"):
        score_files(tmp_path / "ref.txt", [tmp_path / "blank_ref.txt"], "eng_Latn")
    with pytest.raises(PipelineError, match="latin1.txt: line 2 is not valid UTF-8"):
        read_segments(tmp_path / "latin1.txt")
    with pytest.raises(PipelineError, match="missing.txt: file not found"):
        read_segments(tmp_path / "missing.txt")


def run_score(*args: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "tools.score", *args], cwd=root, capture_output=True, text=True)


def test_score_command_json_and_errors(tmp_path: Path):
    folder = SHARED / "wmt22" / "en-zh"
    result = run_score("--hyp", str(folder / "sys-HuaweiTSC.txt"), "--ref", str(folder / "refB.txt"), "--ref", str(folder / "refA.txt"),
                       "--target-lang", "zho_Hans", "--json")
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(last) == {"bleu", "chrf", "chrf_pp", "signatures"}
    assert f"{last['bleu']:.2f}" == f"{TABLE[('en-zh', 'HuaweiTSC', 'bleu-all')]:.2f}"
    assert "nrefs:2" in last["signatures"]["bleu"] and "tok:zh" in last["signatures"]["bleu"]
    (tmp_path / "short.txt").write_text("one line\n")
    bad = run_score("--hyp", str(tmp_path / "short.txt"), "--ref", str(folder / "refA.txt"), "--target-lang", "zho_Hans")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"line count mismatch: hypothesis {tmp_path / 'short.txt'} has 1 lines, reference {folder / 'refA.txt'} has" in bad.stderr
    (tmp_path / "bytes.txt").write_bytes(b"\xff\xfe\n")
    bad = run_score("--hyp", str(tmp_path / "bytes.txt"), "--ref", str(folder / "refA.txt"), "--target-lang", "zho_Hans")
    assert bad.returncode == 2 and "line 1 is not valid UTF-8" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_score("--hyp", str(tmp_path / "short.txt"), "--ref", str(tmp_path / "short.txt"), "--target-lang", "chinese")
    assert bad.returncode == 2 and "unknown FLORES-200 language code 'chinese'" in bad.stderr


def test_japanese_without_mecab_scores_with_char_and_says_so(monkeypatch):
    from bayling.core import languages

    monkeypatch.setattr(languages, "_tokenizer_available", lambda name: name != "ja-mecab")
    scores = score_corpus(["猫がいる"], [["猫がいます"]], "jpn_Jpan")
    assert "tok:char" in scores.signatures["bleu"] and "ja-mecab" in scores.warnings[0]


def test_capability_ratios_match_a_direct_sacrebleu_computation():
    """BayLing-13B's released WMT22 outputs over GPT-4's, as BayLing reports 'x% of GPT-4'."""
    bench = SHARED / "bayling" / "translation_benchmark"
    refs = {"zh-en": "zhen", "en-zh": "enzh", "de-en": "deen", "en-de": "ende"}
    ours, theirs, direct = {}, {}, {}
    for pair, short in refs.items():
        ref = read_segments(bench / "reference" / f"{short}.ref")
        mine = read_segments(bench / "bayling-13b" / f"{pair}.hypo")
        gpt4 = read_segments(bench / "gpt-4" / f"{pair}.hypo")
        against_ref = ReferenceScorer([ref], WMT_TARGET[pair])  # two systems, one reference set
        ours[pair], theirs[pair] = against_ref.score(mine), against_ref.score(gpt4)
        tok = "zh" if pair.endswith("zh") else "13a"
        # sacreBLEU's own metric objects, each holding the reference's statistics for both systems
        metrics = {"bleu": BLEU(tokenize=tok, references=[ref]), "chrf": CHRF(references=[ref]),
                   "chrf_pp": CHRF(word_order=2, references=[ref])}
        direct[pair] = {name: metric.corpus_score(mine, None).score / metric.corpus_score(gpt4, None).score
                        for name, metric in metrics.items()}
    ratios = capability_ratios(ours, theirs)
    for pair in refs:
        for metric in ("bleu", "chrf", "chrf_pp"):
            assert ratios[pair][metric] == pytest.approx(direct[pair][metric], rel=1e-12)
    assert ratios["mean"]["chrf"] == pytest.approx(sum(d["chrf"] for d in direct.values()) / 4)
    assert 0.7 < ratios["mean"]["chrf"] < 1.0


def test_paired_bootstrap_is_seeded_and_stable():
    bench = SHARED / "bayling" / "translation_benchmark"
    ref = read_segments(bench / "reference" / "deen.ref")[:300]
    gpt4 = read_segments(bench / "gpt-4" / "de-en.hypo")[:300]
    bayling = read_segments(bench / "bayling-13b" / "de-en.hypo")[:300]
    first = paired_bootstrap(gpt4, bayling, [ref], "eng_Latn", samples=1000, seed=7)
    again = paired_bootstrap(gpt4, bayling, [ref], "eng_Latn", samples=1000, seed=7)
    assert first.p_values == again.p_values
    assert set(first.p_values) == {"bleu", "chrf", "chrf_pp"} and all(0 < p <= 1 for p in first.p_values.values())
    shuffled = paired_bootstrap(gpt4, ref[1:] + ref[:1], [ref], "eng_Latn", samples=200, seed=7)
    assert shuffled.p_values["chrf"] < 0.01 and shuffled.candidate["chrf"] < shuffled.baseline["chrf"]
    assert first.baseline["bleu"] == pytest.approx(sacrebleu.corpus_bleu(gpt4, [ref]).score)


def test_scorer_drops_a_bom_scores_blank_output_as_zero_and_ignores_a_closed_pipe(tmp_path: Path):
    (tmp_path / "ref.txt").write_text("the cat sat on the mat\nhello there\n")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfthe cat sat on the mat\nhello there\n")
    (tmp_path / "blank.txt").write_text("\n\n")
    with_bom = score_files(tmp_path / "bom.txt", [tmp_path / "ref.txt"], "eng_Latn")
    assert with_bom.bleu == pytest.approx(100.0) and any("byte-order mark" in w for w in with_bom.warnings)
    blank = score_files(tmp_path / "blank.txt", [tmp_path / "ref.txt"], "eng_Latn")
    assert (blank.bleu, blank.chrf, blank.chrf_pp) == (0.0, 0.0, 0.0) and any("every score is zero" in w for w in blank.warnings)
    reader, writer = os.pipe()
    os.close(reader)  # the consumer went away before the scorer printed anything
    proc = subprocess.run([sys.executable, "-m", "tools.score", "--hyp", str(tmp_path / "bom.txt"), "--ref", str(tmp_path / "ref.txt"),
                           "--target-lang", "eng_Latn", "--json"], stdout=writer, stderr=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    os.close(writer)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr


def test_paired_bootstrap_finds_no_difference_between_identical_outputs_and_is_two_sided():
    bench = SHARED / "bayling" / "translation_benchmark"
    ref = read_segments(bench / "reference" / "deen.ref")[:200]
    gpt4 = read_segments(bench / "gpt-4" / "de-en.hypo")[:200]
    same = paired_bootstrap(gpt4, list(gpt4), [ref], "eng_Latn", samples=200, seed=7)
    # sacreBLEU's strict count alone would say p = 1/201 here: "significantly different" from itself
    assert same.p_values == {"bleu": 1.0, "chrf": 1.0, "chrf_pp": 1.0}
    # the test is of |difference|: swapping the two systems changes the sign, not the p-value
    worse = ref[1:] + ref[:1]
    forward = paired_bootstrap(gpt4, worse, [ref], "eng_Latn", samples=200, seed=7)
    backward = paired_bootstrap(worse, gpt4, [ref], "eng_Latn", samples=200, seed=7)
    assert forward.p_values["chrf"] < 0.01 and backward.p_values["chrf"] < 0.01
    assert forward.candidate["chrf"] < forward.baseline["chrf"] and backward.candidate["chrf"] > backward.baseline["chrf"]


@pytest.mark.parametrize("streams", [1, 2])
def test_chrf_and_chrf_pp_equal_sacrebleus_own_to_the_last_bit_with_their_signatures(streams):
    """One reference: chrF comes from chrF++'s character statistics (one extraction for both); two: scored apart,
    because each picks its best reference by its own F-score."""
    hyps = ["The cat sat on the mat.", "", "Ein Hund bellt laut!", "x", "  spaces  around  "]
    refs = [["The cat is on the mat.", "Nothing here.", "A dog barks loudly!", "xyz", "spaces around"],
            ["A cat sat on a mat.", "Empty.", "Ein Hund bellt.", "x", "around spaces"]][:streams]
    scores = score_corpus(hyps, refs, "eng_Latn")
    for metric, word_order in (("chrf", 0), ("chrf_pp", 2)):
        direct = sacrebleu.metrics.CHRF(word_order=word_order)
        assert getattr(scores, metric) == direct.corpus_score(hyps, refs).score, metric
        assert scores.signatures[metric] == str(direct.get_signature()), metric


def test_score_command_names_a_folder_given_as_a_file(tmp_path: Path):
    (tmp_path / "hyp.txt").write_text("a\n")
    (tmp_path / "refs").mkdir()
    bad = run_score("--hyp", str(tmp_path / "hyp.txt"), "--ref", str(tmp_path / "refs"), "--target-lang", "eng_Latn")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"reference {tmp_path / 'refs'}: is a folder, not a file" in bad.stderr
    assert "file not found" not in bad.stderr
