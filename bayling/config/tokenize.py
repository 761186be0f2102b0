"""`tokenize`: chat template, sequence length, loss masking, over-long handling and packing."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from bayling.config.types import PositiveInt, Section


class AuditParams(Section):
    """The tokenizer audit (reports/tokenize/audit.*): the audit stage, run within the tokenize step."""

    max_rows: PositiveInt = 5000  # rows of the corpus, of each test set and of the training chats it reads
    max_premium: Annotated[float, Field(gt=1)] = 2.5  # warn about a language needing more tokens than this x English


class TokenizeParams(Section):
    template: Literal["model", "bayling-v1", "bayling-3"] = "model"
    max_seq_len: Annotated[int, Field(ge=16)] = 512
    loss_on: Literal["all", "last"] = "all"  # assistant turns that carry loss
    overlong: Literal["truncate", "drop"] = "truncate"  # truncate: cut after the last whole assistant turn that fits
    packing: bool = False
    chunk_size: PositiveInt = 10000  # conversations tokenized (and packed) together
    num_proc: PositiveInt = 1
    max_shard_size: str = "500MB"
    audit: AuditParams = AuditParams()
