"""The tokenize stage from conversations to data/tokenized: one call, tokenize_dataset, for stages/tokenize.py.

The chunk engine is bayling.tokenize.chunks, the Arrow shards bayling.tokenize.shards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bayling.config.tokenize import TokenizeParams
from bayling.core.composition import Ratios
from bayling.core.progress import track
from bayling.tokenize.chat import Renderer, prompt_alignment_problem
from bayling.tokenize.chunks import ChunkSettings, TokenizeStats, chunk_count, iter_chunk_columns
from bayling.tokenize.shards import parse_size, write_split


def _synthesized_mix(synth_dir: Path) -> tuple[Ratios, dict[str, float]]:
    """synthesize.mix.ratios as data/synth/card.json records them, and the requested share of each cell
    (nothing when the card is absent: every conversation then counts as not requested)."""
    card_file = synth_dir / "card.json"
    card = json.loads(card_file.read_text("utf-8")) if card_file.is_file() else {}
    ratios = ((card.get("params") or {}).get("mix") or {}).get("ratios") or {}
    return ratios, (card.get("mix") or {}).get("requested") or {}


def tokenize_dataset(params: TokenizeParams, model_dir: Path, synth_dir: Path, out: Path
                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Tokenize data/synth/{train,heldout}.jsonl into the `datasets` layout under `out`, with the
    tokenizer actually used; returns (fingerprint, stats per split, composition: the requested cell shares
    and, per split, conversations and supervised tokens per category as synthesized and as kept)."""
    import shutil

    from transformers import AutoTokenizer

    from bayling.core.errors import PipelineError
    from bayling.core.jsonl import write_json
    from bayling.core.lineage import tokenizer_fingerprint
    from bayling.tokenize.templates import compile_template, prepare_tokenizer

    if params.packing:
        from transformers import AutoConfig

        from bayling.tokenize.packing import packing_refusal

        refusal = packing_refusal(AutoConfig.from_pretrained(model_dir))
        if refusal:
            raise PipelineError(refusal)
    prepared = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir), params.template)
    tokenizer = prepared.tokenizer
    renderer = Renderer(tokenizer, prepared.end_of_turn, compile_template(tokenizer, prepared.end_of_turn))
    misaligned = prompt_alignment_problem(tokenizer, renderer)
    if misaligned:
        raise PipelineError(f"tokenize.template {params.template} does not fit the tokenizer of {model_dir.name}: {misaligned}. "
                            "Choose another tokenize.template (model or bayling-v1)")
    settings = ChunkSettings(params.max_seq_len, params.overlong, params.loss_on, params.packing)
    settings_record = {
        "template": params.template, "end_of_turn": prepared.end_of_turn, "added_tokens": list(prepared.added_tokens),
        "loss_on": params.loss_on, "overlong": params.overlong, "packing": params.packing,
        "chunk_size": params.chunk_size if params.packing else None,
    }
    fingerprint = tokenizer_fingerprint(model_dir, tokenizer.chat_template, params.max_seq_len, settings_record)
    if out.exists():
        shutil.rmtree(out)
    ratios, requested = _synthesized_mix(synth_dir)
    stats, composition = {}, {"requested": requested}
    for split in ("train", "heldout"):
        path = synth_dir / f"{split}.jsonl"
        if not path.exists():
            raise PipelineError(f"data/synth/{split}.jsonl not found: run `python -m stages.synthesize` first")
        counts = TokenizeStats()
        chunks = iter_chunk_columns(path, tokenizer, renderer, settings, params.chunk_size, params.num_proc, counts, ratios)
        chunks = track(chunks, chunk_count(path, params.chunk_size), f"tokenize {split}", "chunk")
        if not write_split(chunks, out / split, parse_size(params.max_shard_size), fingerprint["fingerprint"]):
            raise PipelineError(f"no {split} conversation fits tokenize.max_seq_len={params.max_seq_len}")
        stats[split] = counts.as_dict()
        composition[split] = counts.composition()
    write_json(out / "dataset_dict.json", {"splits": list(stats)})
    tokenizer.save_pretrained(out / "tokenizer")
    write_json(out / "fingerprint.json", fingerprint)
    return fingerprint, stats, composition
