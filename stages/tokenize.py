"""Stage 3, tokenize: render conversations with the chosen chat template, mask non-assistant tokens,
cut or drop over-long ones at turn boundaries, and optionally pack them.

    python -m stages.tokenize
    python -m stages.tokenize --audit    # only the tokenizer audit: the same as python -m stages.audit

Reads data/synth/{train,heldout}.jsonl and the tokenizer in base_model.path. Writes data/tokenized/
(a sharded `datasets` DatasetDict with input_ids, labels (-100 outside the supervised assistant
turns), attention_mask, and position_ids when packed, and per conversation in a row its category and
supervised tokens (mix_category, mix_supervised); the tokenizer actually used, with its chat template and
any added tokens, in data/tokenized/tokenizer/; fingerprint.json), reports/tokenize/stats.json
(sequences, tokens, fill rate, truncations, drops) and reports/tokenize/composition.json (conversations
and supervised tokens per mix cell, task family and reply language, as synthesized and as kept, beside
the shares data/synth/card.json requested).

The tokenizer audit (reports/tokenize/audit.*) is its own stage, `python -m stages.audit`, which
flows.retrain runs within this step.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from bayling.config.base_model import BaseModelParams
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


def main(tokenize: TokenizeParams, base_model: BaseModelParams, tracking: TrackingParams) -> None:
    from bayling.core.composition import Tally
    from bayling.tokenize.run import tokenize_dataset

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
    track_stage("tokenize", tracking.experiment, {**tokenize.model_dump(mode="json"), "fingerprint": fingerprint["fingerprint"]},
                stats, [STATS, COMPOSITION, OUT / "fingerprint.json"])


if __name__ == "__main__":
    if "--audit" in sys.argv[1:]:  # the audit's command from before it had a stage of its own
        import runpy

        runpy.run_module("stages.audit", run_name="__main__")
    else:
        run_stage("tokenize", ["tokenize", "base_model", "tracking"], main)
