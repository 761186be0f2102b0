"""The tokenizer audit: what the base model's tokenizer costs each language of the corpus, the test sets and
the training chats. Part of the tokenize step: flows.retrain runs it right after tokenize.

    python -m stages.audit

Reads tokenize.template, tokenize.max_seq_len and tokenize.audit, the tokenizer in base_model.path,
data/raw/corpus.jsonl, data/synth/train.jsonl and the file-based sets of evaluate.test_sets. Writes
reports/tokenize/audit.{json,csv} and fertility.png (a DVC plot): per language, tokens per character and
word, the premium against English on the same segments, the rate of tokens that are not whole characters,
and the share of training chats over max_seq_len. A stage of its own, so that an evaluation setting
re-runs the audit and not tokenize.
"""

from __future__ import annotations

import logging

from bayling.config.base_model import BaseModelParams
from bayling.config.evaluate import EvaluateParams
from bayling.config.tokenize import TokenizeParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from stages._common import project_root, run_stage, track_stage

ROOT = project_root()  # read each time the stage runs (see stages/_common.py)

log = logging.getLogger("audit")
REPORTS = ROOT / "reports" / "tokenize"


def main(tokenize: TokenizeParams, base_model: BaseModelParams, evaluate: EvaluateParams, tracking: TrackingParams) -> None:
    from bayling.tokenize.audit import run_audit

    if not (ROOT / base_model.path).exists():
        raise PipelineError(f"{base_model.path} not found: run `python -m stages.base_model` first")
    for name in ("raw/corpus.jsonl", "synth/train.jsonl"):
        if not (ROOT / "data" / name).exists():
            raise PipelineError(f"data/{name} not found: the tokenizer audit reads it; run the stages before tokenize first")
    result = run_audit(tokenize, ROOT / base_model.path, ROOT, evaluate.test_sets, REPORTS)
    for lang in result.languages:
        log.info("audit %s: %s tokens/char, %s tokens/word, premium vs English %s, partial or unknown tokens %.2f%%, truncated %s",
                 lang.language, lang.tokens_per_char, lang.tokens_per_word or "-", lang.premium_vs_english or "-",
                 100 * lang.partial_or_unknown_rate, "-" if lang.truncated_share is None else f"{lang.truncated_share:.1%}")
    for lang in result.flagged:
        log.warning("the tokenizer needs %.2fx the tokens of English for %s (above tokenize.audit.max_premium %.2f): "
                    "its chats fill the context sooner and cost more compute per sentence", lang.premium_vs_english,
                    lang.language, tokenize.audit.max_premium)
    settings = {"template": tokenize.template, "max_seq_len": tokenize.max_seq_len, **tokenize.audit.model_dump(mode="json")}
    track_stage("audit", tracking.experiment, settings, {},
                [REPORTS / "audit.json", REPORTS / "audit.csv", REPORTS / "fertility.png"])


if __name__ == "__main__":
    run_stage("audit", ["tokenize", "base_model", "evaluate", "tracking"], main)
