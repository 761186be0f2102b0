"""Translation metrics with sacreBLEU: BLEU with the target language's tokenizer, chrF2 and chrF2++, with signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bayling.core.errors import PipelineError
from bayling.core.languages import bleu_tokenizer_for


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


def score_corpus(hypotheses: Sequence[str], references: Sequence[Sequence[str]], target_lang: str) -> Scores:
    """Corpus-level scores of `hypotheses` against one or more reference streams, in the order given."""
    from sacrebleu.metrics import BLEU, CHRF

    if not references:
        raise PipelineError("at least one reference stream is needed")
    for i, stream in enumerate(references):
        if len(stream) != len(hypotheses):
            raise PipelineError(
                f"reference stream {i + 1} has {len(stream)} segments but there are {len(hypotheses)} hypotheses"
            )
    if not hypotheses:
        raise PipelineError("nothing to score: no hypotheses")
    choice = bleu_tokenizer_for(target_lang)
    refs = [list(stream) for stream in references]
    hyps = list(hypotheses)
    bleu = BLEU(tokenize=choice.tokenizer)
    chrf = CHRF()
    chrf_pp = CHRF(word_order=2)
    bleu_score = bleu.corpus_score(hyps, refs)
    chrf_score = chrf.corpus_score(hyps, refs)
    chrf_pp_score = chrf_pp.corpus_score(hyps, refs)
    return Scores(
        bleu=bleu_score.score,
        chrf=chrf_score.score,
        chrf_pp=chrf_pp_score.score,
        n=len(hyps),
        signatures={
            "bleu": str(bleu.get_signature()),
            "chrf": str(chrf.get_signature()),
            "chrf_pp": str(chrf_pp.get_signature()),
        },
        warnings=(choice.warning,) if choice.warning else (),
    )


def macro_average(scores: Sequence[Scores]) -> dict[str, float]:
    """Unweighted mean over directions, the way multilingual tables report an average."""
    if not scores:
        return {}
    keys = ("bleu", "chrf", "chrf_pp")
    return {k: sum(getattr(s, k) for s in scores) / len(scores) for k in keys}


def read_segments(path: str | Path, role: str = "file", warnings: list[str] | None = None, allow_blank: bool = False) -> list[str]:
    """One segment per line, strictly: undecodable bytes and empty files are errors naming the file.

    A UTF-8 byte-order mark is dropped (with a warning in `warnings`, when given); with `allow_blank`, a
    file of blank lines is read as that many empty segments instead of refused.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{role} {path}: file not found")
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        if warnings is not None:
            warnings.append(f"{role} {path} starts with a UTF-8 byte-order mark; it was dropped")
    if not data.strip() and not (allow_blank and data):
        raise PipelineError(f"{role} {path}: file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PipelineError(f"{role} {path}: line {line} is not valid UTF-8 (byte {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


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
    p_values: dict[str, float]
    baseline: dict[str, float]
    candidate: dict[str, float]


def paired_bootstrap(
    baseline: Sequence[str], candidate: Sequence[str], references: Sequence[Sequence[str]], target_lang: str,
    samples: int = 1000, seed: int = 12345,
) -> PairedResult:
    """sacreBLEU's paired bootstrap resampling of a candidate against a baseline, seeded, per metric (BLEU
    with the target's tokenizer, chrF2, chrF2++).

    The p-value is two-sided, as sacreBLEU computes it from |difference|: the chance of a gap this large
    if the two systems were equally good. Which one is ahead is read from the scores. An observed gap of
    exactly zero gets p = 1: sacreBLEU's strict count would give 1/(samples+1) there, which reads as
    "significantly different" for two systems that scored the same.
    """
    import os

    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    tokenizer = bleu_tokenizer_for(target_lang).tokenizer
    metrics = {"bleu": BLEU(tokenize=tokenizer), "chrf": CHRF(), "chrf_pp": CHRF(word_order=2)}
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)  # sacreBLEU reads its bootstrap seed from here
    try:
        test = PairedTest([("baseline", list(baseline)), ("candidate", list(candidate))], metrics,
                          [list(r) for r in references], test_type="bs", n_samples=samples)
        _, results = test()
    finally:
        if previous is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = previous
    p_values, base_scores, cand_scores = {}, {}, {}
    reported = [key for key in results if key != "System"]  # sacreBLEU's display names, in our metrics' order
    for name, key in zip(metrics, reported):
        base_result, cand_result = results[key]
        p_values[name] = float(cand_result.p_value) if cand_result.score != base_result.score else 1.0
        base_scores[name] = float(base_result.score)
        cand_scores[name] = float(cand_result.score)
    return PairedResult(p_values, base_scores, cand_scores)


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
