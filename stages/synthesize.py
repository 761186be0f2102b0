"""Stage 2, synthesize: build instruction conversations from the corpus, with a seeded, leak-free held-out split.

    python -m stages.synthesize

Reads data/raw/corpus.jsonl. Writes data/synth/train.jsonl and data/synth/heldout.jsonl
({"id", "messages": [{"role", "content"}], "meta": {"task", "src_lang", "tgt_lang", "source_ids"}})
and data/synth/card.json with counts per split, task and language pair.
"""

from __future__ import annotations

import json
import logging

from bayling import synthesis
from bayling.errors import PipelineError
from bayling.params import SynthesizeParams
from bayling.storage import atomic_writer
from stages._common import ROOT, run_stage, write_json

log = logging.getLogger("synthesize")
CORPUS = ROOT / "data" / "raw" / "corpus.jsonl"
OUT = ROOT / "data" / "synth"


def main(synthesize: SynthesizeParams) -> None:
    if not CORPUS.exists():
        raise PipelineError("data/raw/corpus.jsonl not found: run `python -m stages.fetch` first")
    with open(CORPUS, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    split_of = synthesis.split_rows(rows, synthesize.heldout_fraction, synthesize.seed)
    allowed = None if synthesize.directions == "all" else synthesize.directions
    splits: dict[str, list] = {"train": [], "heldout": []}
    for row in rows:
        splits[split_of[row["id"]]].extend(
            synthesis.translation_conversations(
                row,
                instruction_language=synthesize.instruction_language,
                system_prompt=synthesize.system_prompt,
                allowed_directions=allowed,
            )
        )
    if not splits["train"]:
        raise PipelineError("synthesis produced no training conversations: check synthesize.directions against the corpus languages")
    for name, conversations in splits.items():
        with atomic_writer(OUT / f"{name}.jsonl") as handle:
            for conversation in conversations:
                handle.write(json.dumps(conversation, ensure_ascii=False) + "\n")
    card = synthesis.build_card(splits, synthesize.model_dump(mode="json"))
    write_json(OUT / "card.json", card)
    for name, info in card["splits"].items():
        log.info("%s: %d conversations from %d corpus rows", name, info["conversations"], info["source_rows"])


if __name__ == "__main__":
    run_stage("synthesize", ["synthesize"], main)
