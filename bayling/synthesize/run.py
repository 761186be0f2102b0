"""The synthesize stage from corpus to data card: screen, split, build shards, add general chats, mix,
merge, and count what was written."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from glob import glob
from pathlib import Path
from typing import Any

from bayling.config.synthesize import SynthesizeParams
from bayling.core.archives import data_root
from bayling.core.composition import cell_label
from bayling.core.errors import PipelineError
from bayling.core.jsonl import dumps_line, write_jsonl
from bayling.core.records import Conversation
from bayling.core.storage import atomic_writer
from bayling.synthesize import card as data_card
from bayling.synthesize import engine
from bayling.synthesize.decontam import Decontaminator, read_eval_texts
from bayling.synthesize.general import ChatFit, build_general
from bayling.synthesize.mix import (
    achieved_mix,
    combined_factors,
    language_report,
    merge_shards,
    mix_counts,
    plan_languages,
    plan_mix,
    shard_weights,
)
from bayling.synthesize.screening import screen_file
from bayling.synthesize.split import split_file

log = logging.getLogger(__name__)


def _load_decontaminator(params: SynthesizeParams, root: Path) -> Decontaminator | None:
    if not params.decontamination.eval_sets:
        return None
    index = Decontaminator(n=params.decontamination.ngram)
    for eval_set in params.decontamination.eval_sets:
        base = data_root(eval_set.archive, root)
        paths = sorted({p for pattern in eval_set.paths for p in glob(str(base / pattern), recursive=True)})
        if not paths:
            where = f" in {eval_set.archive}" if eval_set.archive else ""
            raise PipelineError(f"decontamination set '{eval_set.name}': no file matches {eval_set.paths}{where}")
        index.add(eval_set.name, read_eval_texts(map(Path, paths), eval_set.format, tuple(eval_set.fields)))
    log.info("decontamination index: %s", ", ".join(f"{k} ({v} segments)" for k, v in index.sizes.items()))
    return index


def _conversations(path: Path) -> Iterator[Conversation]:
    with open(path, encoding="utf-8") as handle:
        yield from (Conversation.from_json(json.loads(line)) for line in handle)


def synthesize(params: SynthesizeParams, root: Path, corpus: Path, out: Path, fit: ChatFit | None = None) -> dict[str, Any]:
    """Write out/{train,heldout,quarantine}.jsonl from the corpus and return the data card. With `fit`, general
    chats are cut to (or set aside for) the context tokenize will give them."""
    work = out / ".work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    decontaminator = _load_decontaminator(params, root)

    with atomic_writer(out / "quarantine.jsonl") as quarantine:
        screen = screen_file(corpus, work / "rows.jsonl", quarantine, params.filters, decontaminator)
        flags = split_file(work / "rows.jsonl", params.heldout_fraction, params.seed)
        executor = None
        if params.dask.enabled:  # the engine is handed its executor; it never imports the Dask one
            from bayling.synthesize.dask_executor import run_on_dask

            executor = run_on_dask
        blocks = engine.run_blocks(work, flags, params, root, executor)
        general = build_general(params, root, decontaminator, fit)
        for record in general.quarantined:
            quarantine.write(dumps_line({"kind": "general", **record.to_json()}))
    write_jsonl(work / "general-train.jsonl", general.train)
    write_jsonl(work / "general-heldout.jsonl", general.heldout)
    train_paths = engine.shard_paths(work, "train") + [work / "general-train.jsonl"]
    heldout_paths = engine.shard_paths(work, "heldout") + [work / "general-heldout.jsonl"]

    # The mix applies to training data only; the held-out side stays whole for evaluation.
    ratios = {family: dict(groups) for family, groups in params.mix.ratios.items()}
    weights = None
    if params.mix.unit == "supervised_tokens":
        if fit is None:
            raise PipelineError("synthesize.mix.unit supervised_tokens counts tokens with the base model's tokenizer: "
                                "none was given (set unit: conversations to mix without one)")
        weights = shard_weights(train_paths, fit.supervised_tokens)
    conversations, weighed = mix_counts(train_paths, weights)
    counts, amounts = dict(conversations), dict(weighed)
    languages = plan_languages(amounts, ratios, params.mix.temperature, params.mix.max_repeat)
    plan = plan_mix(languages.balanced, ratios, params.mix.mode, params.mix.max_repeat)
    factors = combined_factors(languages.factors, plan.keep_probability, params.mix.mode, params.mix.max_repeat)
    with atomic_writer(out / "train.jsonl") as handle:
        kept = merge_shards(train_paths, handle, factors, params.seed, unique := Counter(), weights, kept_amounts := Counter())
    with atomic_writer(out / "heldout.jsonl") as handle:
        merge_shards(heldout_paths, handle, None, params.seed)
    shutil.rmtree(work)
    kept_cells: Counter = Counter()
    for (family, group, _), n in kept.items():
        kept_cells[(family, group)] += n
    kept_cell_amounts: Counter = Counter()
    for (family, group, _), n in (kept_amounts if weights is not None else kept).items():
        kept_cell_amounts[(family, group)] += n

    def by_cell(slots: Counter) -> dict[str, int]:
        cells: Counter = Counter()
        for (family, group, _), n in slots.items():
            cells[cell_label(family, group, ratios)] += n
        return dict(sorted(cells.items()))

    rows_by_cell, kept_by_cell, unique_by_cell = by_cell(Counter(counts)), by_cell(kept), by_cell(unique)
    kept_total = sum(kept.values())
    for cell, rows in rows_by_cell.items():
        if rows and unique_by_cell.get(cell, 0) < 0.5 * rows:
            log.warning("the mix used %d of the %d training conversations of %s (%.0f%%) to reach the requested shares: "
                        "add data to the scarce cells, raise synthesize.mix.max_repeat (mode: resample), or set mode: report "
                        "to keep everything", unique_by_cell.get(cell, 0), rows, cell, 100 * unique_by_cell.get(cell, 0) / rows)
    if not kept_total:
        raise PipelineError("synthesis kept no training conversations: check directions, filters and synthesize.mix")

    return data_card.build_card(
        {"train": _conversations(out / "train.jsonl"), "heldout": _conversations(out / "heldout.jsonl")},
        params.model_dump(mode="json", exclude={"dask"}),  # how shards ran doesn't change what they made
        mix={
            "mode": params.mix.mode,
            "unit": params.mix.unit,
            "requested": {k: round(v, 4) for k, v in plan.requested.items()},
            "achieved": achieved_mix(dict(kept_cell_amounts), ratios),  # in the unit
            "achieved_conversations": achieved_mix(dict(kept_cells), ratios),
            "available": rows_by_cell,
            "kept": kept_by_cell,  # rows written, repeats included
            "kept_unique": unique_by_cell,  # distinct conversations among them
            "kept_by_family": {f"{f}.{g}": n for (f, g), n in sorted(kept_cells.items())},
            "temperature": params.mix.temperature,
            "max_repeat": params.mix.max_repeat,
            "languages": language_report(counts, dict(kept)),
        },
        filters=screen.as_dict(),
        decontamination={
            "ngram": params.decontamination.ngram,
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
        teacher={"interactive": dict(blocks.teacher), "general": general.teacher} if params.teacher.enabled else {},
    )
