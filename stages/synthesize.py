"""Stage 2, synthesize: BayLing instruction data from the corpus, with quality filters, decontamination,
a leak-free held-out split and the BayLing 2 mix.

    python -m stages.synthesize

Reads data/raw/corpus.jsonl (and general instruction JSONL and the teacher when params.yaml names them), and
every file of the evaluate.test_sets that synthesize.decontamination.against names (and of its extra sets).
General chats are measured with the base model's tokenizer and chat template (base_model.path): cut after
their last exchange that fits tokenize.max_seq_len, or set aside into the quarantine file when not even the
first one does, so tokenize drops none of them. Writes data/synth/train.jsonl and data/synth/heldout.jsonl
({"id", "messages", "meta": {"task", "family", "group", "instruction_language", "turn_tasks",
"src_lang", "tgt_lang", "source_ids"}}), data/synth/card.json and card.md, data/synth/quarantine.jsonl,
and reports/synth/languages.png.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bayling.config.base_model import BaseModelParams
from bayling.config.evaluate import EvaluateParams
from bayling.config.synthesize import SynthesizeParams
from bayling.config.tokenize import TokenizeParams
from bayling.config.tracking import TrackingParams
from bayling.core.errors import PipelineError
from stages._common import project_root, run_stage, track_stage, write_json

if TYPE_CHECKING:
    from bayling.synthesize.general import ChatFit

ROOT = project_root()  # read each time the stage runs (see stages/_common.py)

log = logging.getLogger("synthesize")
CORPUS = ROOT / "data" / "raw" / "corpus.jsonl"
OUT = ROOT / "data" / "synth"
CHART = ROOT / "reports" / "synth" / "languages.png"


def chat_fit(base_model: BaseModelParams, tokenize: TokenizeParams) -> ChatFit:
    from transformers import AutoTokenizer

    from bayling.synthesize.general import ChatFit

    model_dir = ROOT / base_model.path
    if not (model_dir / "tokenizer.json").exists():
        raise PipelineError(f"{base_model.path}/tokenizer.json not found: general chats are measured with the base model's "
                            "tokenizer; run `python -m stages.base_model` first")
    return ChatFit(AutoTokenizer.from_pretrained(model_dir), tokenize.max_seq_len)


def main(synthesize: SynthesizeParams, base_model: BaseModelParams, tokenize: TokenizeParams, evaluate: EvaluateParams,
         tracking: TrackingParams) -> None:
    from bayling.synthesize.card import language_chart, render_card_markdown
    from bayling.synthesize.run import synthesize as build

    if not CORPUS.exists():
        raise PipelineError("data/raw/corpus.jsonl not found: run `python -m stages.fetch` first")
    measured = synthesize.general.sources or synthesize.mix.unit == "supervised_tokens"
    fit = chat_fit(base_model, tokenize) if measured else None
    card = build(synthesize, ROOT, CORPUS, OUT, fit, evaluate.test_sets)
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
    run_stage("synthesize", ["synthesize", "base_model", "tokenize", "evaluate", "tracking"], main)
