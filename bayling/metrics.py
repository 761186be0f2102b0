"""Translation metrics with sacreBLEU: BLEU with the target language's tokenizer, chrF2 and chrF2++, with signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bayling.errors import PipelineError
from bayling.languages import bleu_tokenizer_for


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
