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

import json
import logging
import shutil
from glob import glob
from pathlib import Path

import numpy as np

from bayling import synth_engine as engine
from bayling import synthesis
from bayling.decontam import Decontaminator, read_eval_texts
from bayling.errors import PipelineError
from bayling.params import SynthesizeParams, TrackingParams
from bayling.plots import language_distribution
from bayling.storage import atomic_writer
from stages._common import ROOT, run_stage, track_stage, write_json

log = logging.getLogger("synthesize")
CORPUS = ROOT / "data" / "raw" / "corpus.jsonl"
OUT = ROOT / "data" / "synth"
WORK = OUT / ".work"


def load_decontaminator(params: SynthesizeParams) -> Decontaminator | None:
    if not params.decontamination.eval_sets:
        return None
    index = Decontaminator(n=params.decontamination.ngram)
    for eval_set in params.decontamination.eval_sets:
        paths = sorted({p for pattern in eval_set.paths for p in glob(str(ROOT / pattern), recursive=True)})
        if not paths:
            raise PipelineError(f"decontamination set '{eval_set.name}': no file matches {eval_set.paths}")
        index.add(eval_set.name, read_eval_texts(map(Path, paths), eval_set.format, tuple(eval_set.fields)))
    log.info("decontamination index: %s", ", ".join(f"{k} ({v} segments)" for k, v in index.sizes.items()))
    return index


def run_blocks(params: SynthesizeParams, flags) -> engine.BlockSummary:  # type: ignore[no-untyped-def]
    """Synthesize every shard into WORK, on Dask when params say so; returns the summed counts."""
    if params.dask.enabled:
        from flows.synthesis import run_on_dask

        np.save(WORK / "flags.npy", flags)
        return run_on_dask(str(WORK), params, str(ROOT))
    total = engine.BlockSummary.empty()
    for i, block in enumerate(engine.iter_blocks(WORK / "rows.jsonl", params.shard_size)):
        offset = i * params.shard_size
        result = engine.synthesize_block(block, flags[offset : offset + len(block)], params, str(ROOT))
        total.add(engine.write_block(WORK, i, result))
    return total


def main(synthesize: SynthesizeParams, tracking: TrackingParams) -> None:
    if not CORPUS.exists():
        raise PipelineError("data/raw/corpus.jsonl not found: run `python -m stages.fetch` first")
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    decontaminator = load_decontaminator(synthesize)

    with atomic_writer(OUT / "quarantine.jsonl") as quarantine:
        screen = engine.screen_file(CORPUS, WORK / "rows.jsonl", quarantine, synthesize.filters, decontaminator)
        flags = engine.split_file(WORK / "rows.jsonl", synthesize.heldout_fraction, synthesize.seed)
        blocks = run_blocks(synthesize, flags)
        general = engine.build_general(synthesize, ROOT, decontaminator)
        for record in general.quarantined:
            quarantine.write(json.dumps({"kind": "general", **record.to_json()}, ensure_ascii=False) + "\n")
    engine.write_jsonl(WORK / "general-train.jsonl", general.train)
    engine.write_jsonl(WORK / "general-heldout.jsonl", general.heldout)
    train_paths = engine.shard_paths(WORK, "train") + [WORK / "general-train.jsonl"]
    heldout_paths = engine.shard_paths(WORK, "heldout") + [WORK / "general-heldout.jsonl"]

    # The mix applies to training data only; the held-out side stays whole for evaluation.
    ratios = {family: dict(groups) for family, groups in synthesize.mix.ratios.items()}
    plan = synthesis.plan_mix(dict(engine.mix_counts(train_paths)), ratios, synthesize.mix.mode)
    with atomic_writer(OUT / "train.jsonl") as out:
        kept = engine.merge_shards(train_paths, out, plan.keep_probability, synthesize.seed)
    with atomic_writer(OUT / "heldout.jsonl") as out:
        engine.merge_shards(heldout_paths, out, None, synthesize.seed)
    shutil.rmtree(WORK)
    available, kept_total = sum(plan.available.values()), sum(kept.values())
    if available and kept_total < 0.5 * available:
        log.warning("the mix kept %d of %d training conversations (%.0f%%) to reach the requested shares; "
                    "set synthesize.mix.mode: report to keep everything", kept_total, available, 100 * kept_total / available)
    if not kept_total:
        raise PipelineError("synthesis kept no training conversations: check directions, filters and synthesize.mix")

    # The data card, counted from what was written.
    def stream(name: str):  # type: ignore[no-untyped-def]
        with open(OUT / f"{name}.jsonl", encoding="utf-8") as handle:
            yield from map(json.loads, handle)

    card = synthesis.build_card(
        {"train": stream("train"), "heldout": stream("heldout")},
        synthesize.model_dump(mode="json", exclude={"dask"}),  # how shards ran doesn't change what they made
        mix={
            "mode": synthesize.mix.mode,
            "requested": {k: round(v, 4) for k, v in plan.requested.items()},
            "achieved": synthesis.achieved_mix(dict(kept), ratios),
            "available": plan.available,
            "kept": {f"{f}.{g}": n for (f, g), n in sorted(kept.items())},
        },
        filters=screen.as_dict(),
        decontamination={
            "ngram": synthesize.decontamination.ngram,
            "eval_set_segments": decontaminator.sizes if decontaminator else {},
            "corpus_rows_removed": dict(sorted(screen.decontaminated.items())),
            "general_chats_removed": {k.split(": ", 1)[1]: v for k, v in general.stats.items() if k.startswith("decontaminated")},
        },
        interactive={
            "skipped_followups": dict(sorted(blocks.skipped.items())),
            "instruction_language_fallbacks": blocks.instruction_fallbacks,
            "teacher_rejected": dict(sorted(blocks.teacher_rejected.items())),
        },
        general=dict(sorted(general.stats.items())),
        teacher={"interactive": dict(blocks.teacher), "general": general.teacher} if synthesize.teacher.enabled else {},
    )
    write_json(OUT / "card.json", card)
    (OUT / "card.md").write_text(synthesis.render_card_markdown(card), "utf-8")
    language_distribution({s: card["splits"][s]["per_language"] for s in card["splits"]},
                          ROOT / "reports" / "synth" / "languages.png", "Conversations per language")
    log.info("rows: %d in, %d kept, %d quarantined", screen.rows_in, screen.rows_kept, screen.rows_quarantined)
    for name, info in card["splits"].items():
        log.info("%s: %d conversations (%s)", name, info["conversations"],
                 ", ".join(f"{k} {v}" for k, v in info["per_family"].items()))
    log.info("mix requested %s, achieved %s", card["mix"]["requested"], card["mix"]["achieved"])
    track_stage("synthesize", tracking.experiment, synthesize.model_dump(mode="json", exclude={"dask"}),
                {"splits": card["splits"], "mix": {"achieved": card["mix"]["achieved"]}},
                [OUT / "card.json", OUT / "card.md", ROOT / "reports" / "synth" / "languages.png"])


if __name__ == "__main__":
    run_stage("synthesize", ["synthesize", "tracking"], main)
