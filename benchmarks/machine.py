"""What this machine can do at best, measured in the same run as a benchmark: the achievable matmul rate
(large square fp32, and bf16 where the CPU has native bf16 instructions) and the memory copy bandwidth.
A benchmark reports its own figures against these, so a ratio comes with the machine's own limit.

    python benchmarks/machine.py          # prints the figures, last line JSON
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bayling.core.hardware import native_bf16  # noqa: E402


def matmul_flops(dtype_name: str = "float32", size: int = 2048, seconds: float = 3.0) -> float:
    """Achieved FLOP/s of repeated size x size matmuls in this dtype (the best of the timed repeats)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        a @ b
        elapsed = time.perf_counter() - started
        best = max(best, 2 * size**3 / elapsed)
    return best


def copy_bandwidth(megabytes: int = 512, seconds: float = 2.0) -> float:
    """Achieved bytes/s of copying a large fp32 tensor (a read and a write per byte, counted as 2 bytes moved)."""
    import torch

    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    target.copy_(source)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        target.copy_(source)
        elapsed = time.perf_counter() - started
        best = max(best, 2 * source.numel() * 4 / elapsed)
    return best


def measure(bf16: bool | None = None) -> dict[str, float | bool | int | None]:
    import torch

    bf16 = native_bf16() if bf16 is None else bf16
    return {
        "threads": torch.get_num_threads(),
        "native_bf16": bf16,
        "peak_fp32_flops": round(matmul_flops("float32")),
        "peak_bf16_flops": round(matmul_flops("bfloat16")) if bf16 else None,
        "copy_bytes_per_s": round(copy_bandwidth()),
    }


if __name__ == "__main__":
    figures = measure()
    print(f"{figures['threads']} threads: fp32 matmul {figures['peak_fp32_flops'] / 1e9:.1f} GFLOP/s, "
          f"bf16 matmul {(figures['peak_bf16_flops'] or 0) / 1e9:.1f} GFLOP/s, copy {figures['copy_bytes_per_s'] / 1e9:.1f} GB/s")
    print(json.dumps(figures))
