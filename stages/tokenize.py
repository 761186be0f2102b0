"""Stage 3, tokenize: render conversations with the chosen chat template, mask non-assistant tokens,
cut or drop over-long ones at turn boundaries, and optionally pack them.

    python -m stages.tokenize
    python -m stages.tokenize --audit    # only the tokenizer audit: what the tokenizer costs each language

Reads data/synth/{train,heldout}.jsonl and the tokenizer in base_model.path. Writes data/tokenized/
(a sharded `datasets` DatasetDict with input_ids, labels (-100 outside the supervised assistant
turns), attention_mask, and position_ids when packed, and per conversation in a row its category and
supervised tokens (mix_category, mix_supervised); the tokenizer actually used, with its chat template and
any added tokens, in data/tokenized/tokenizer/; fingerprint.json), reports/tokenize/stats.json
(sequences, tokens, fill rate, truncations, drops) and reports/tokenize/composition.json (conversations
and supervised tokens per mix cell, task family and reply language, as synthesized and as kept, beside
the shares data/synth/card.json requested).

The tokenizer audit (tokenize.audit) also reads data/raw/corpus.jsonl and the file-based test sets of
evaluate.test_sets, and writes reports/tokenize/audit.{json,csv} and fertility.png (a DVC plot):
per language, tokens per character and word, the premium against English on the same segments, the
rate of tokens that are not whole characters, and the share of training chats over max_seq_len.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from bayling.config.base_model import BaseModelParams
from bayling.config.evaluate import EvaluateParams
from bayling.config.tokenize import TokenizeParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from stages._common import project_root, run_stage, track_stage, write_json

ROOT = project_root()  # read each time the stage runs (see stages/_common.py)

log = logging.getLogger("tokenize")
SYNTH = ROOT / "data" / "synth"
OUT = ROOT / "data" / "tokenized"
REPORTS = ROOT / "reports" / "tokenize"
STATS = REPORTS / "stats.json"
COMPOSITION = REPORTS / "composition.json"


def _model_dir(base_model: BaseModelParams) -> Path:
    model_dir = ROOT / base_model.path
    if not model_dir.exists():
        raise PipelineError(f"{base_model.path} not found: run `python -m stages.base_model` first")
    return model_dir


def audit(tokenize: TokenizeParams, base_model: BaseModelParams, evaluate: EvaluateParams, **_: object) -> list[Path]:
    from bayling.tokenize.audit import run_audit

    for name in ("raw/corpus.jsonl", "synth/train.jsonl"):
        if not (ROOT / "data" / name).exists():
            raise PipelineError(f"data/{name} not found: the tokenizer audit reads it; run the stages before tokenize first")
    result = run_audit(tokenize, _model_dir(base_model), ROOT, evaluate.test_sets, REPORTS)
    for lang in result.languages:
        log.info("audit %s: %s tokens/char, %s tokens/word, premium vs English %s, partial or unknown tokens %.2f%%, truncated %s",
                 lang.language, lang.tokens_per_char, lang.tokens_per_word or "-", lang.premium_vs_english or "-",
                 100 * lang.partial_or_unknown_rate, "-" if lang.truncated_share is None else f"{lang.truncated_share:.1%}")
    for lang in result.flagged:
        log.warning("the tokenizer needs %.2fx the tokens of English for %s (above tokenize.audit.max_premium %.2f): "
                    "its chats fill the context sooner and cost more compute per sentence", lang.premium_vs_english,
                    lang.language, tokenize.audit.max_premium)
    return [REPORTS / "audit.json", REPORTS / "audit.csv", REPORTS / "fertility.png"]


def main(tokenize: TokenizeParams, base_model: BaseModelParams, evaluate: EvaluateParams, tracking: TrackingParams) -> None:
    from bayling.core.composition import Tally
    from bayling.tokenize.encode import tokenize_dataset

    fingerprint, stats, composition = tokenize_dataset(tokenize, _model_dir(base_model), SYNTH, OUT)
    for split, counts in stats.items():
        log.info("%s: %d conversations -> %d rows, %d tokens (%d supervised), %d truncated, %d dropped%s", split,
                 counts["conversations_in"], counts["rows"], counts["tokens"], counts["supervised_tokens"], counts["truncated"],
                 counts["dropped"], f", fill rate {counts['fill_rate']:.3f}" if tokenize.packing else "")
    kept = Tally.from_json(composition["train"]["kept"])
    log.info("train mix of supervised tokens, as kept: %s", ", ".join(
        f"{cell} {100 * share:.1f}%" for cell, share in kept.shares("cell", "supervised_tokens").items()))
    write_json(STATS, stats)
    write_json(COMPOSITION, composition)
    audit_files = audit(tokenize, base_model, evaluate)
    track_stage("tokenize", tracking.experiment, {**tokenize.model_dump(mode="json"), "fingerprint": fingerprint["fingerprint"]},
                stats, [STATS, COMPOSITION, OUT / "fingerprint.json", *audit_files])


if __name__ == "__main__":
    run_stage("tokenize", ["tokenize", "base_model", "evaluate", "tracking"], audit if "--audit" in sys.argv[1:] else main)
