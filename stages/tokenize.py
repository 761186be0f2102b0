"""Stage 3, tokenize: render conversations with the chosen chat template, mask non-assistant tokens,
cut or drop over-long ones at turn boundaries, and optionally pack them.

    python -m stages.tokenize

Reads data/synth/{train,heldout}.jsonl and the tokenizer in base_model.path. Writes data/tokenized/
(a sharded `datasets` DatasetDict with input_ids, labels (-100 outside the supervised assistant
turns), attention_mask, and position_ids when packed; the tokenizer actually used, with its chat
template and any added tokens, in data/tokenized/tokenizer/; fingerprint.json) and
reports/tokenize/stats.json (sequences, tokens, fill rate, truncations, drops).
"""

from __future__ import annotations

import logging

from bayling.config.base_model import BaseModelParams
from bayling.config.tokenize import TokenizeParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from stages._common import ROOT, run_stage, track_stage, write_json

log = logging.getLogger("tokenize")
SYNTH = ROOT / "data" / "synth"
OUT = ROOT / "data" / "tokenized"
STATS = ROOT / "reports" / "tokenize" / "stats.json"


def main(tokenize: TokenizeParams, base_model: BaseModelParams, tracking: TrackingParams) -> None:
    from bayling.tokenize.encode import tokenize_dataset

    model_dir = ROOT / base_model.path
    if not model_dir.exists():
        raise PipelineError(f"{base_model.path} not found: run `python -m stages.base_model` first")
    fingerprint, stats = tokenize_dataset(tokenize, model_dir, SYNTH, OUT)
    for split, counts in stats.items():
        log.info("%s: %d conversations -> %d rows, %d tokens (%d supervised), %d truncated, %d dropped%s", split,
                 counts["conversations_in"], counts["rows"], counts["tokens"], counts["supervised_tokens"], counts["truncated"],
                 counts["dropped"], f", fill rate {counts['fill_rate']:.3f}" if tokenize.packing else "")
    write_json(STATS, stats)
    track_stage("tokenize", tracking.experiment, {**tokenize.model_dump(mode="json"), "fingerprint": fingerprint["fingerprint"]},
                stats, [STATS, OUT / "fingerprint.json"])


if __name__ == "__main__":
    run_stage("tokenize", ["tokenize", "base_model", "tracking"], main)
