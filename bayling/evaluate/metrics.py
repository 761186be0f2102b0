"""Translation metrics with sacreBLEU: BLEU with the target language's tokenizer, chrF2 and chrF2++, with signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayling.core.errors import PipelineError
from bayling.core.languages import bleu_tokenizer_for
from bayling.core.test_sets import read_segments


@dataclass(frozen=True)
class Scores:
    bleu: float
    chrf: float
    chrf_pp: float
    n: int
    signatures: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def as_dict(self, digits: int = 4) -> dict[str, float | int]:
        return {"bleu": round(self.bleu, digits), "chrf": round(self.chrf, digits), "chrf_pp": round(self.chrf_pp, digits), "n": self.n}


class ReferenceScorer:
    """Corpus scores against one set of reference streams, for as many systems as need them: sacreBLEU extracts
    the references' n-grams once (its own `references=` cache), so each further system costs only its own pass.
    Holds those statistics while it lives (about 200 MB for two 2,000-segment streams)."""

    def __init__(self, references: Sequence[Sequence[str]], target_lang: str) -> None:
        from sacrebleu.metrics import BLEU, CHRF

        if not references:
            raise PipelineError("at least one reference stream is needed")
        self.n = len(references[0])
        for i, stream in enumerate(references):
            if len(stream) != self.n:
                raise PipelineError(f"reference stream {i + 1} has {len(stream)} segments but stream 1 has {self.n}")
        self.choice = bleu_tokenizer_for(target_lang)
        refs = [list(stream) for stream in references]
        self.single = len(refs) == 1
        self.bleu = BLEU(tokenize=self.choice.tokenizer, references=refs)
        self.chrf_pp = CHRF(word_order=2, references=refs)
        # with one reference, chrF comes from chrF++'s statistics (see `score`); with several it picks its own best
        self.chrf = CHRF() if self.single else CHRF(references=refs)
        self.chrf.num_refs = self.chrf_pp.num_refs  # for its signature's nrefs, when it never sees the references

    def score(self, hypotheses: Sequence[str]) -> Scores:
        if len(hypotheses) != self.n:
            raise PipelineError(f"reference stream 1 has {self.n} segments but there are {len(hypotheses)} hypotheses")
        if not hypotheses:
            raise PipelineError("nothing to score: no hypotheses")
        hyps = list(hypotheses)
        bleu_score = self.bleu.corpus_score(hyps, None)
        chrf_pp_stats = self.chrf_pp._extract_corpus_statistics(hyps, None)
        chrf_pp_score = self.chrf_pp._aggregate_and_compute(chrf_pp_stats)
        if self.single:
            # chrF's statistics are the character part of chrF++'s (the first 3 x char_order numbers of each segment):
            # with one reference there is no best-reference choice that could differ, so one n-gram extraction serves
            # both, the way sacreBLEU's paired test reuses statistics (a third less scoring time on one reference)
            characters = 3 * self.chrf.char_order
            chrf_score = self.chrf._aggregate_and_compute([row[:characters] for row in chrf_pp_stats])
        else:
            chrf_score = self.chrf.corpus_score(hyps, None)
        return Scores(
            bleu=bleu_score.score,
            chrf=chrf_score.score,
            chrf_pp=chrf_pp_score.score,
            n=len(hyps),
            signatures={
                "bleu": str(self.bleu.get_signature()),
                "chrf": str(self.chrf.get_signature()),
                "chrf_pp": str(self.chrf_pp.get_signature()),
            },
            warnings=(self.choice.warning,) if self.choice.warning else (),
        )


def score_corpus(hypotheses: Sequence[str], references: Sequence[Sequence[str]], target_lang: str) -> Scores:
    """Corpus-level scores of `hypotheses` against one or more reference streams, in the order given."""
    for i, stream in enumerate(references):  # named against the hypotheses, before the scorer compares the streams
        if len(stream) != len(hypotheses):
            raise PipelineError(
                f"reference stream {i + 1} has {len(stream)} segments but there are {len(hypotheses)} hypotheses"
            )
    return ReferenceScorer(references, target_lang).score(hypotheses)


def macro_average(scores: Sequence[Scores]) -> dict[str, float]:
    """Unweighted mean over directions, the way multilingual tables report an average."""
    if not scores:
        return {}
    keys = ("bleu", "chrf", "chrf_pp")
    return {k: sum(getattr(s, k) for s in scores) / len(scores) for k in keys}


def score_files(hyp_path: str | Path, ref_paths: Sequence[str | Path], target_lang: str) -> Scores:
    """Score a hypothesis file against reference files (in the order given), checking their lengths.

    A hypothesis file of blank lines (a system that produced nothing) scores zero, with a warning.
    """
    warnings: list[str] = []
    hyps = read_segments(hyp_path, "hypothesis", warnings, allow_blank=True)
    refs = [read_segments(p, "reference", warnings) for p in ref_paths]
    for path, stream in zip(ref_paths, refs):
        if len(stream) != len(hyps):
            raise PipelineError(f"line count mismatch: hypothesis {hyp_path} has {len(hyps)} lines, reference {path} has {len(stream)}")
    if not any(h.strip() for h in hyps):
        warnings.append(f"hypothesis {hyp_path} has no text on any of its {len(hyps)} lines: every score is zero")
    scores = score_corpus(hyps, refs, target_lang)
    return Scores(scores.bleu, scores.chrf, scores.chrf_pp, scores.n, scores.signatures, (*warnings, *scores.warnings))


@dataclass(frozen=True)
class PairedResult:
    """A candidate against a baseline on the same segments, per metric: both corpus scores, the two-sided
    p-value of their difference, the 95% bootstrap interval of the change (candidate minus baseline), and the
    change in each bootstrap sample (what an average over directions is resampled from)."""

    p_values: dict[str, float]
    baseline: dict[str, float]
    candidate: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    sample_changes: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # metric -> ndarray

    def change(self, metric: str) -> float:
        return self.candidate[metric] - self.baseline[metric]


def _two_sided_p(sample_changes: Any, observed: float) -> float:
    """sacreBLEU's paired-bootstrap p-value (Koehn 2004, as in Moses): how often a resampled |difference|, centred
    on its mean, exceeds the observed one, with the +1 correction. An observed change of exactly zero is p = 1:
    the strict count would give 1/(samples+1) there, which reads as "significantly different" for equal systems."""
    import numpy as np

    if observed == 0:
        return 1.0
    gaps = np.abs(sample_changes)
    exceed = int(np.sum(gaps - gaps.mean() > abs(observed)))
    return (exceed + 1) / (len(gaps) + 1)


def _interval(sample_changes: Any) -> tuple[float, float]:
    """The 95% bootstrap interval, with sacreBLEU's bounds: the (n//40)-th smallest and largest sample."""
    import numpy as np

    ordered = np.sort(sample_changes)
    cut = len(ordered) // 40
    return float(ordered[cut]), float(ordered[len(ordered) - cut - 1])


def paired_bootstrap(
    baseline: Sequence[str], candidate: Sequence[str], references: Sequence[Sequence[str]], target_lang: str,
    samples: int = 1000, seed: int = 12345,
) -> PairedResult:
    """sacreBLEU's paired bootstrap resampling of a candidate against a baseline, seeded, per metric (BLEU
    with the target's tokenizer, chrF2, chrF2++), plus the 95% interval of the change.

    The resampling is sacreBLEU's own (`sacrebleu.significance._paired_bs_test`): the same seeded index
    matrix, the same sufficient statistics summed in float32, the same two-sided p-value, so the p-values
    equal `sacrebleu --paired-bs` with SACREBLEU_SEED=seed. It is written out here because sacreBLEU reports
    each system's own interval, not the interval of their difference, and keeps no per-sample scores to
    average over directions (see `average_change`).
    """
    import numpy as np
    from sacrebleu.metrics import BLEU, CHRF

    if len(baseline) != len(candidate):
        raise PipelineError(f"paired bootstrap: {len(baseline)} baseline outputs but {len(candidate)} candidate outputs")
    tokenizer = bleu_tokenizer_for(target_lang).tokenizer
    metrics = {"bleu": BLEU(tokenize=tokenizer), "chrf": CHRF(), "chrf_pp": CHRF(word_order=2)}
    refs = [list(r) for r in references]
    indices = np.random.default_rng(seed).choice(len(candidate), size=(samples, len(candidate)), replace=True)
    p_values, base_scores, cand_scores, intervals, changes = {}, {}, {}, {}, {}
    for name, metric in metrics.items():
        per_system = []
        for outputs in (list(baseline), list(candidate)):
            stats = metric._extract_corpus_statistics(outputs, refs)
            score = metric._aggregate_and_compute(stats).score
            table = np.array(stats, dtype="float32")
            resampled = np.array([metric._compute_score_from_stats(rows.sum(0)).score for rows in table[indices]])
            per_system.append((score, resampled))
        (base_score, base_samples), (cand_score, cand_samples) = per_system
        changes[name] = cand_samples - base_samples
        base_scores[name], cand_scores[name] = float(base_score), float(cand_score)
        p_values[name] = _two_sided_p(changes[name], cand_score - base_score)
        intervals[name] = _interval(changes[name])
    return PairedResult(p_values, base_scores, cand_scores, intervals, changes)


def average_change(results: Sequence[PairedResult]) -> PairedResult:
    """The macro average over directions as one paired test: each bootstrap sample's average change over the
    directions (each direction resampled by its own paired bootstrap), tested and bounded as one direction is.

    All results must come from the same number of samples. With the same seed and segment count (a
    multi-parallel set such as FLORES), every direction draws the same segment positions in a sample, so
    one sample resamples whole source sentences across directions.
    """
    import numpy as np

    if not results:
        raise ValueError("no directions to average")
    p_values, base_scores, cand_scores, intervals, changes = {}, {}, {}, {}, {}
    for name in results[0].p_values:
        changes[name] = np.mean([r.sample_changes[name] for r in results], axis=0)
        base_scores[name] = sum(r.baseline[name] for r in results) / len(results)
        cand_scores[name] = sum(r.candidate[name] for r in results) / len(results)
        p_values[name] = _two_sided_p(changes[name], cand_scores[name] - base_scores[name])
        intervals[name] = _interval(changes[name])
    return PairedResult(p_values, base_scores, cand_scores, intervals, changes)


def capability_ratios(ours: dict[str, Scores], theirs: dict[str, Scores]) -> dict[str, dict[str, float]]:
    """Our score over a reference system's, per direction and metric, plus the mean over directions."""
    ratios: dict[str, dict[str, float]] = {}
    for direction in sorted(set(ours) & set(theirs)):
        ratios[direction] = {
            m: getattr(ours[direction], m) / getattr(theirs[direction], m) if getattr(theirs[direction], m) else float("nan")
            for m in ("bleu", "chrf", "chrf_pp")
        }
    if ratios:
        ratios["mean"] = {m: sum(r[m] for r in ratios.values()) / len(ratios) for m in ("bleu", "chrf", "chrf_pp")}
    return ratios
