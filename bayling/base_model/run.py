"""The base_model prepare step's library entry: materialising the base model as a plain Hugging Face
directory (dequantized GGUF, hub copy, or tiny random Llama)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from bayling.base_model.sources import dequantize_gguf, load_gguf_tokenizer, packaged_file, parameter_count, save_base, tiny_random_llama
from bayling.config.base_model import BaseModelParams

log = logging.getLogger(__name__)


def materialize(params: BaseModelParams, out: Path) -> dict[str, Any]:
    """Write the base model that `params` describe into `out` (replacing it); returns its provenance record."""
    if out.exists():
        shutil.rmtree(out)
    provenance: dict[str, Any] = {"source": params.source}
    if params.source == "gguf":
        gguf = packaged_file(params.gguf_package, params.gguf_file)
        log.info("dequantizing %s", gguf)
        model, tokenizer = dequantize_gguf(gguf)
        provenance.update(package=params.gguf_package, file=params.gguf_file)
    elif params.source == "tiny-random":
        gguf = packaged_file(params.gguf_package, params.gguf_file)
        tokenizer = load_gguf_tokenizer(gguf)
        model = tiny_random_llama(tokenizer, params.tiny)
        provenance.update(tokenizer_from=params.gguf_file, tiny=params.tiny.model_dump())
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(params.hf_id)
        model = AutoModelForCausalLM.from_pretrained(params.hf_id)
        provenance.update(hf_id=params.hf_id)
    provenance["parameters"] = parameter_count(model)
    provenance["vocabulary"] = len(tokenizer)
    save_base(model, tokenizer, out, {k: v for k, v in provenance.items() if k != "vocabulary"})
    return provenance
