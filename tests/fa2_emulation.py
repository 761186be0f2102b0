"""FlashAttention-2 on a CPU: exact torch stand-ins for `flash_attn_func` and `flash_attn_varlen_func`,
patched into transformers' FlashAttention integration, so the code paths transformers takes for
`attn_implementation="flash_attention_2"` (and which of them a batch takes) can be tested without a GPU.

The stand-ins have flash-attn 2's signatures, because transformers inspects them to decide which
keyword arguments to pass. Each runs PyTorch's reference attention in fp32, per sequence for varlen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None) -> torch.Tensor:
    """(seq, heads, dim) each, grouped-query heads repeated; causal aligned to the bottom right, as flash-attn does."""
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    qh, kh, vh = (x.transpose(0, 1).float() for x in (q, k, v))  # (heads, seq, dim)
    mask = None
    if causal:
        lq, lk = qh.shape[1], kh.shape[1]
        mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=lk - lq)
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=scale)
    return out.transpose(0, 1).to(q.dtype)


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """(batch, seq, heads, dim): every row of the batch is one sequence."""
    assert dropout_p == 0.0 and window_size == (-1, -1) and not softcap and alibi_slopes is None
    return torch.stack([_attention(q[b], k[b], v[b], causal, softmax_scale) for b in range(q.shape[0])])


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0, softmax_scale=None,
                           causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                           return_attn_probs=False, block_table=None):
    """(total, heads, dim), sequences delimited by the cumulative lengths: none attends to another."""
    assert dropout_p == 0.0 and window_size == (-1, -1) and not softcap and alibi_slopes is None
    outs = []
    for i in range(len(cu_seqlens_q) - 1):
        qs, qe, ks, ke = int(cu_seqlens_q[i]), int(cu_seqlens_q[i + 1]), int(cu_seqlens_k[i]), int(cu_seqlens_k[i + 1])
        outs.append(_attention(q[qs:qe], k[ks:ke], v[ks:ke], causal, softmax_scale))
    return torch.cat(outs)


CALLS = {"flash_attn_func": 0, "flash_attn_varlen_func": 0}


def _counted(name, fn):
    def wrapper(*args, **kwargs):
        CALLS[name] += 1
        return fn(*args, **kwargs)

    wrapper.__signature__ = __import__("inspect").signature(fn)
    return wrapper


@contextlib.contextmanager
def emulated_flash_attention_2() -> Iterator[dict[str, int]]:
    """Within the block transformers believes flash-attn 2 is installed and calls the stand-ins; yields call counts."""
    import transformers.modeling_flash_attention_utils as fa_utils
    from transformers.utils import import_utils

    original_imports = fa_utils._lazy_imports
    originals = {name: getattr(fa_utils, name) for name in ("_loaded_implementation", "is_flash_attn_2_available")}
    original_available = import_utils.is_flash_attn_2_available

    def fake_imports(implementation, attention_wrapper=None, allow_all_kernels=False):
        assert implementation == "flash_attention_2", implementation
        return (_counted("flash_attn_func", flash_attn_func), _counted("flash_attn_varlen_func", flash_attn_varlen_func), None,
                fa_utils._pad_input, fa_utils._unpad_input)

    for name in CALLS:
        CALLS[name] = 0
    fa_utils._lazy_imports = fake_imports
    fa_utils._loaded_implementation = None
    fa_utils.is_flash_attn_2_available = lambda *a, **k: True
    import_utils.is_flash_attn_2_available = lambda *a, **k: True
    try:
        yield CALLS
    finally:
        fa_utils._lazy_imports = original_imports
        for name, value in originals.items():
            setattr(fa_utils, name, value)
        fa_utils._loaded_implementation = None
        import_utils.is_flash_attn_2_available = original_available


def use_flash_attention_2(model) -> None:
    """Switch a loaded model to the FlashAttention-2 code path (the stand-ins must be active when it runs)."""
    model.config._attn_implementation = "flash_attention_2"
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and config is not model.config and hasattr(config, "_attn_implementation"):
            config._attn_implementation = "flash_attention_2"
