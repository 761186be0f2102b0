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
import shutil

from bayling.errors import PipelineError
from bayling.params import BaseModelParams, TokenizeParams, TrackingParams
from stages._common import ROOT, run_stage, track_stage, write_json

log = logging.getLogger("tokenize")
SYNTH = ROOT / "data" / "synth"
OUT = ROOT / "data" / "tokenized"


def main(tokenize: TokenizeParams, base_model: BaseModelParams, tracking: TrackingParams) -> None:
    from transformers import AutoTokenizer

    from bayling.chat import Renderer
    from bayling.lineage import tokenizer_fingerprint
    from bayling.templates import compile_template, prepare_tokenizer
    from bayling.tokenization import ChunkSettings, TokenizeStats, iter_chunk_columns, parse_size, write_split

    model_dir = ROOT / base_model.path
    if not model_dir.exists():
        raise PipelineError(f"{base_model.path} not found: run `python -m stages.base_model` first")
    prepared = prepare_tokenizer(AutoTokenizer.from_pretrained(model_dir), tokenize.template)
    tokenizer = prepared.tokenizer
    renderer = Renderer(tokenizer, prepared.end_of_turn, compile_template(tokenizer, prepared.end_of_turn))
    settings = ChunkSettings(tokenize.max_seq_len, tokenize.overlong, tokenize.loss_on, tokenize.packing)
    settings_record = {
        "template": tokenize.template, "end_of_turn": prepared.end_of_turn, "added_tokens": list(prepared.added_tokens),
        "loss_on": tokenize.loss_on, "overlong": tokenize.overlong, "packing": tokenize.packing,
        "chunk_size": tokenize.chunk_size if tokenize.packing else None,
    }
    fingerprint = tokenizer_fingerprint(model_dir, tokenizer.chat_template, tokenize.max_seq_len, settings_record)
    if OUT.exists():
        shutil.rmtree(OUT)
    stats = {}
    for split in ("train", "heldout"):
        path = SYNTH / f"{split}.jsonl"
        if not path.exists():
            raise PipelineError(f"data/synth/{split}.jsonl not found: run `python -m stages.synthesize` first")
        counts = TokenizeStats()
        chunks = iter_chunk_columns(path, tokenizer, renderer, settings, tokenize.chunk_size, tokenize.num_proc, counts)
        if not write_split(chunks, OUT / split, parse_size(tokenize.max_shard_size), fingerprint["fingerprint"]):
            raise PipelineError(f"no {split} conversation fits tokenize.max_seq_len={tokenize.max_seq_len}")
        stats[split] = counts.as_dict()
        log.info("%s: %d conversations -> %d rows, %d tokens (%d supervised), %d truncated, %d dropped%s", split,
                 counts.conversations_in, counts.rows, counts.tokens, counts.supervised_tokens, counts.truncated,
                 counts.dropped, f", fill rate {stats[split]['fill_rate']:.3f}" if tokenize.packing else "")
    write_json(OUT / "dataset_dict.json", {"splits": list(stats)})
    tokenizer.save_pretrained(OUT / "tokenizer")
    write_json(OUT / "fingerprint.json", fingerprint)
    write_json(ROOT / "reports" / "tokenize" / "stats.json", stats)
    track_stage("tokenize", tracking.experiment, {**tokenize.model_dump(mode="json"), "fingerprint": fingerprint["fingerprint"]},
                stats, [ROOT / "reports" / "tokenize" / "stats.json", OUT / "fingerprint.json"])


if __name__ == "__main__":
    run_stage("tokenize", ["tokenize", "base_model", "tracking"], main)
