"""Stage 2, synthesize: BayLing instruction data from the corpus, with quality filters, decontamination,
a leak-free held-out split and the BayLing 2 mix.

    python -m stages.synthesize

Reads data/raw/corpus.jsonl (and general instruction JSONL, evaluation sets and the teacher when
params.yaml names them). Writes data/synth/train.jsonl and data/synth/heldout.jsonl
({"id", "messages", "meta": {"task", "family", "group", "instruction_language", "turn_tasks",
"src_lang", "tgt_lang", "source_ids"}}), data/synth/card.json and card.md, data/synth/quarantine.jsonl,
and reports/synth/languages.png.
"""

from __future__ import annotations

import logging

from bayling.config.synthesize import SynthesizeParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from stages._common import project_root, run_stage, track_stage, write_json

ROOT = project_root()  # read each time the stage runs (see stages/_common.py)

log = logging.getLogger("synthesize")
CORPUS = ROOT / "data" / "raw" / "corpus.jsonl"
OUT = ROOT / "data" / "synth"
CHART = ROOT / "reports" / "synth" / "languages.png"


def main(synthesize: SynthesizeParams, tracking: TrackingParams) -> None:
    from bayling.synthesize.card import language_chart, render_card_markdown
    from bayling.synthesize.run import synthesize as build

    if not CORPUS.exists():
        raise PipelineError("data/raw/corpus.jsonl not found: run `python -m stages.fetch` first")
    card = build(synthesize, ROOT, CORPUS, OUT)
    write_json(OUT / "card.json", card)
    (OUT / "card.md").write_text(render_card_markdown(card), "utf-8")
    language_chart(card, CHART)
    filters = card["filters"]
    log.info("rows: %d in, %d kept, %d quarantined", filters["rows_in"], filters["rows_kept"], filters["rows_quarantined"])
    for name, info in card["splits"].items():
        log.info("%s: %d conversations (%s)", name, info["conversations"],
                 ", ".join(f"{k} {v}" for k, v in info["per_family"].items()))
    log.info("mix requested %s, achieved %s", card["mix"]["requested"], card["mix"]["achieved"])
    track_stage("synthesize", tracking.experiment, synthesize.model_dump(mode="json", exclude={"dask"}),
                {"splits": card["splits"], "mix": {"achieved": card["mix"]["achieved"]}},
                [OUT / "card.json", OUT / "card.md", CHART])


if __name__ == "__main__":
    run_stage("synthesize", ["synthesize", "tracking"], main)
