"""What a lab watches while training runs: tokens per second and model FLOPs utilisation per logged step."""

from __future__ import annotations

import math
import time
from typing import Any

from bayling.core.records import IGNORE_INDEX
from bayling.core.tracking import ResilientLogger
from bayling.train.trainer import unwrapped

PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0, "V100": 125.0, "T4": 65.0}


def flops_per_token(model: Any, sequence_length: int, lora: bool = False) -> float:
    """Training FLOPs per token: 6N for the matmuls (4N with frozen base weights under LoRA) plus the
    attention scores, 12 * layers * width * sequence length (the PaLM appendix B estimate)."""
    base = unwrapped(model)
    config = base.config
    params = sum(p.numel() for p in base.parameters())
    if not getattr(config, "tie_word_embeddings", False):
        params -= base.get_input_embeddings().weight.numel()  # a lookup, not a matmul
    attention = 12 * config.num_hidden_layers * config.hidden_size * sequence_length
    return (4 if lora else 6) * params + attention


def peak_flops(configured_tflops: float | None) -> float | None:
    """Peak dense FLOP/s of one device: from params, or the table by GPU name; None on an unknown CPU."""
    import torch

    if configured_tflops:
        return configured_tflops * 1e12
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        for key, tflops in PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
    return None


def make_step_logger(logger: ResilientLogger, flops_per_token_value: float, peak: float | None, world_size: int) -> Any:
    """A TrainerCallback that sends the Trainer's logs, tokens/s and MFU to a ResilientLogger, on rank 0 only."""
    from transformers import TrainerCallback

    class StepLogger(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []
            self._last: tuple[float, int] | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._last = (time.perf_counter(), int(state.num_input_tokens_seen or 0))

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            numeric = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
            now, seen = time.perf_counter(), int(state.num_input_tokens_seen or 0)
            if self._last and now > self._last[0] and seen > self._last[1]:
                rate = (seen - self._last[1]) / (now - self._last[0])
                numeric["tokens_per_s"] = rate
                if peak:
                    numeric["mfu"] = rate * flops_per_token_value / (peak * world_size)
            self._last = (now, seen)
            numeric["step"] = state.global_step
            self.history.append(numeric)
            logger.log_metrics({k: v for k, v in numeric.items() if k != "step"}, step=state.global_step)

    return StepLogger()


def trainable_tokens(dataset: Any) -> int:
    """Label positions that carry loss, counted on the Arrow column without materialising rows."""
    import pyarrow.compute as pc

    labels = dataset.data.column("labels").combine_chunks().flatten()
    return int(pc.sum(pc.not_equal(labels, IGNORE_INDEX)).as_py() or 0)
