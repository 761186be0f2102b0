"""Where evaluation's replies come from: the model's weights in this process (Hugging Face `generate`), or an
OpenAI-compatible server that a lab already runs for it (`vllm serve`, TGI, SGLang, `transformers serve`).

Both answer the same chat messages with greedy decoding and the same token budget; the server applies the
chat template and stop tokens it finds in the model folder, which are the ones training exported
(tokenizer_config.json and generation_config.json), and the replies are cleaned by the same code. The
served side goes through the project's `openai` SDK client (bayling.core.chat_client), the one the
teacher and judge use. No line-break stop string is sent: `clean_output` keeps the first non-empty line,
and a server that stopped at a leading blank line would return nothing where `generate` returns text.

Served replies are never taken from the generation cache: what a server returns depends on state this
process cannot see (its dtype, version, kernels and batch composition), so every run asks it again.

XCOPA scores answer choices by their log-likelihood, which a chat endpoint does not give: it always runs
on the local weights. A champion's re-translation also runs locally: its folder is downloaded from the
registry to this machine, where a remote server cannot read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bayling.config.evaluate import EvaluateParams
from bayling.core.errors import PipelineError
from bayling.core.records import Message


class Replier(Protocol):
    """Assistant replies to conversations that end with a user turn, in input order."""

    def __call__(self, conversations: Sequence[Sequence[Message]], *, max_new_tokens: int | Sequence[int],
                 first_line_only: bool = False) -> list[str]:
        """`max_new_tokens`: one limit, or one per conversation."""
        ...

    def settings(self) -> dict[str, Any]:
        """What, besides the model files and prompts, decides the replies (a generation-cache key part)."""
        ...


class LazyModel:
    """A model loaded on first use: a run whose outputs all come from the generation cache never loads it."""

    def __init__(self, path: Path, precision: str) -> None:
        from bayling.models.generation import resolved_precision

        # resolved here: the generation cache's key must name the dtype the outputs came from, not `auto`
        self.path, self.precision, self.model = path, resolved_precision(precision), None

    def __call__(self) -> Any:
        if self.model is None:
            from transformers import AutoModelForCausalLM

            from bayling.models.generation import weights_dtype

            self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=weights_dtype(self.precision))
        return self.model


@dataclass
class LocalReplier:
    """Batched `generate` on the weights in `model`, loaded when first needed."""

    model: LazyModel
    tokenizer: Any
    batch_size: int
    num_beams: int = 1
    stop_loops: bool = False
    regroup_below: float = 0.0

    def __call__(self, conversations: Sequence[Sequence[Message]], *, max_new_tokens: int | Sequence[int],
                 first_line_only: bool = False) -> list[str]:
        from bayling.models.generation import generate

        return generate(self.model(), self.tokenizer, conversations, batch_size=self.batch_size, max_new_tokens=max_new_tokens,
                        num_beams=self.num_beams, first_line_only=first_line_only, stop_loops=self.stop_loops and self.num_beams == 1,
                        regroup_below=self.regroup_below if self.num_beams == 1 else 0.0)

    def settings(self) -> dict[str, Any]:
        return {"engine": "hf", "batch_size": self.batch_size, "num_beams": self.num_beams, "precision": self.model.precision,
                "stop_loops": self.stop_loops, "regroup_below": self.regroup_below}


@dataclass
class ServedReplier:
    """Chat completions from an OpenAI-compatible server, `max_concurrency` requests in flight."""

    base_url: str
    served_model: str
    api_key_env: str | None
    max_concurrency: int
    timeout_s: float
    max_retries: int

    def __call__(self, conversations: Sequence[Sequence[Message]], *, max_new_tokens: int | Sequence[int],
                 first_line_only: bool = False) -> list[str]:
        from bayling.core.chat_client import ChatSettings, ChatStats, complete

        each = None if isinstance(max_new_tokens, int) else list(max_new_tokens)
        settings = ChatSettings(base_url=self.base_url, model=self.served_model, api_key_env=self.api_key_env,
                                max_concurrency=self.max_concurrency, timeout_s=self.timeout_s, max_retries=self.max_retries,
                                temperature=0.0, max_tokens=max(each) if each else max_new_tokens)
        requests = [tuple((m["role"], m["content"]) for m in messages) for messages in conversations]
        stats = ChatStats()
        replies = complete(settings, requests, None, stats, max_tokens=each)
        missing = sum(reply is None for reply in replies)
        if missing:
            errors = ", ".join(f"{kind} x{count}" for kind, count in sorted(stats.errors.items())) or "no reply"
            raise PipelineError(f"evaluate.server: {missing} of {len(replies)} requests to {self.base_url} (model "
                                f"{self.served_model!r}) failed ({errors}); every output is needed to score a test set")
        return [reply or "" for reply in replies]

    def settings(self) -> dict[str, Any]:
        return {"engine": "openai", "base_url": self.base_url, "served_model": self.served_model}


def cacheable(replier: Replier) -> bool:
    """Whether the generation cache may stand in for this replier: only for weights this process loads itself."""
    return isinstance(replier, LocalReplier)


def local_replier(params: EvaluateParams, model_dir: Path, tokenizer: Any) -> LocalReplier:
    """Generation on the weights in `model_dir`, with evaluate's precision, batch size and beams."""
    return LocalReplier(LazyModel(model_dir, params.precision), tokenizer, params.batch_size, params.num_beams, params.stop_loops,
                        params.regroup_below)


def replier_for(params: EvaluateParams, label: str, model_dir: Path, tokenizer: Any) -> LocalReplier | ServedReplier:
    """The configured engine's replier for the model labelled `label` ("final", "base") in `model_dir`."""
    if params.engine == "hf":
        return local_replier(params, model_dir, tokenizer)
    if params.num_beams != 1:
        raise PipelineError("evaluate.engine openai decodes greedily: set evaluate.num_beams to 1, or use engine hf for beam search")
    server = params.server
    return ServedReplier(
        base_url=server.base_urls.get(label, server.base_url),
        served_model=server.models.get(label) or str(model_dir.absolute()),  # as `vllm serve "$PWD/models/final"` names it
        api_key_env=server.api_key_env,
        max_concurrency=server.max_concurrency or params.batch_size,
        timeout_s=server.timeout_s,
        max_retries=server.max_retries,
    )
