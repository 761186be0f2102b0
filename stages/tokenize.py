"""Stage 3, tokenize: render conversations with the base model's chat template and mask non-assistant tokens.

    python -m stages.tokenize

Reads data/synth/{train,heldout}.jsonl and the tokenizer in base_model.path. Writes data/tokenized/
(a `datasets` DatasetDict with input_ids, labels (-100 outside assistant turns) and attention_mask,
plus fingerprint.json) and reports/tokenize/stats.json.
"""

from __future__ import annotations

import json
import logging
import shutil

from bayling.errors import PipelineError
from bayling.params import BaseModelParams, TokenizeParams
from stages._common import ROOT, run_stage, write_json

log = logging.getLogger("tokenize")
SYNTH = ROOT / "data" / "synth"
OUT = ROOT / "data" / "tokenized"
BATCH = 512


def main(tokenize: TokenizeParams, base_model: BaseModelParams) -> None:
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    from bayling.chat import encode_conversations
    from bayling.lineage import tokenizer_fingerprint

    model_dir = ROOT / base_model.path
    if not model_dir.exists():
        raise PipelineError(f"{base_model.path} not found: run `python -m stages.base_model` first")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not tokenizer.chat_template:
        raise PipelineError(f"the tokenizer in {base_model.path} has no chat_template")
    splits, stats = {}, {}
    for split in ("train", "heldout"):
        path = SYNTH / f"{split}.jsonl"
        if not path.exists():
            raise PipelineError(f"data/synth/{split}.jsonl not found: run `python -m stages.synthesize` first")
        with open(path, encoding="utf-8") as handle:
            conversations = [json.loads(line) for line in handle]
        columns: dict[str, list] = {"id": [], "input_ids": [], "labels": [], "attention_mask": []}
        dropped = 0
        for start in range(0, len(conversations), BATCH):
            chunk = conversations[start : start + BATCH]
            for conversation, encoded in zip(chunk, encode_conversations(tokenizer, [c["messages"] for c in chunk])):
                if len(encoded) > tokenize.max_seq_len:
                    dropped += 1
                    continue
                columns["id"].append(conversation["id"])
                columns["input_ids"].append(encoded.input_ids)
                columns["labels"].append(encoded.labels)
                columns["attention_mask"].append([1] * len(encoded))
        tokens = sum(len(ids) for ids in columns["input_ids"])
        supervised = sum(sum(1 for t in labels if t != -100) for labels in columns["labels"])
        stats[split] = {
            "conversations_in": len(conversations),
            "sequences": len(columns["input_ids"]),
            "dropped_overlong": dropped,
            "tokens": tokens,
            "supervised_tokens": supervised,
            "max_len": max((len(ids) for ids in columns["input_ids"]), default=0),
        }
        splits[split] = Dataset.from_dict(columns)
        log.info("%s: %d sequences, %d tokens (%d supervised), %d dropped as longer than %d",
                 split, stats[split]["sequences"], tokens, supervised, dropped, tokenize.max_seq_len)
    if not stats["train"]["sequences"]:
        raise PipelineError(f"every training conversation is longer than tokenize.max_seq_len={tokenize.max_seq_len}")
    if OUT.exists():
        shutil.rmtree(OUT)
    DatasetDict(splits).save_to_disk(str(OUT), num_proc=tokenize.num_proc if tokenize.num_proc > 1 else None)
    write_json(OUT / "fingerprint.json", tokenizer_fingerprint(model_dir, tokenizer.chat_template, tokenize.max_seq_len))
    write_json(ROOT / "reports" / "tokenize" / "stats.json", stats)


if __name__ == "__main__":
    run_stage("tokenize", ["tokenize", "base_model"], main)
