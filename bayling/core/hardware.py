"""What the machine's arithmetic can do natively, for choices that depend on it (precision)."""

from __future__ import annotations

from pathlib import Path


def native_bf16() -> bool:
    """Whether bf16 matmuls run natively: a CUDA GPU that supports them, or a CPU with AVX512-BF16 or AMX-BF16."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, so no
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
