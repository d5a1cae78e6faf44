"""Triton: the O(N·K) teacher summary (visd eq. 3, 20) in one streaming sweep per teacher row.

A running top-K is kept as int64 keys that pack the order-preserving bits of the fp32 logit (high
word) with 2^32 − 1 − index (low word), so one integer comparison orders by value and then by lower
index (the tie rule), and tl.topk — which returns values only — still yields the indices. Tiles whose
best key cannot beat the running K-th key are skipped. K = 0 (the sampled-token variant) instead needs
the teacher's full-vocabulary normalizer, for log q(y_t).
"""

import torch
import triton
import triton.language as tl

from kernels.triton_rows import INTERPRETED, INTERPRETER_TOPK_BLOCK_V, row_logsumexp

__all__ = ["INTERPRETED", "teacher_topk_forward"]

_KEY_MIN = tl.constexpr(-(2**63))  # below the key of any logit, even −inf: fills masked lanes


@triton.jit
def _order_key(x, cols):
    bits = (x + 0.0).to(tl.int32, bitcast=True)  # + 0.0 turns −0.0 into +0.0, which compare equal
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # fp32 order as signed int32 order
    return (ordered.to(tl.int64) << 32) | (0xFFFFFFFF - cols.to(tl.int64))


@triton.jit
def _key_value_and_index(keys):
    hi = (keys >> 32).to(tl.int32)
    bits = hi ^ ((hi >> 31) & 0x7FFFFFFF)
    return bits.to(tl.float32, bitcast=True), 0xFFFFFFFF - (keys & 0xFFFFFFFF)


@triton.jit
def _teacher_topk_kernel(logits_ptr, row_stride, tokens_ptr, ids_ptr, topk_logits_ptr, token_logits_ptr, logprob_ptr,
                         V, K, inv_t, K_PAD: tl.constexpr, SAMPLED_TOKEN: tl.constexpr, BLOCK_V: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    row = logits_ptr + t * row_stride
    y = tl.load(tokens_ptr + t)
    teacher_y = tl.load(row + y).to(tl.float32) * inv_t
    tl.store(token_logits_ptr + t, teacher_y)
    if SAMPLED_TOKEN:  # K = 0: Δ_t = log q(y_t) − log π(y_t) needs the full normalizer
        row_max, log_sum, _ = row_logsumexp(row, V, inv_t, BLOCK_V, False)
        tl.store(logprob_ptr + t, (teacher_y - row_max) - log_sum)
    else:
        best = tl.full([K_PAD], _KEY_MIN, tl.int64)  # sorted descending, as tl.topk returns it
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            x = tl.load(row + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
            keys = tl.where(cols < V, _order_key(x, cols), _KEY_MIN)
            if tl.max(keys, axis=0) > tl.min(best, axis=0):  # keys are unique: strict is exact
                merged = tl.reshape(tl.join(best, tl.topk(keys, K_PAD)), [2 * K_PAD])
                best = tl.topk(merged, K_PAD)
        values, ids = _key_value_and_index(best)
        offs = tl.arange(0, K_PAD)
        tl.store(ids_ptr + t * K + offs, ids, mask=offs < K)
        tl.store(topk_logits_ptr + t * K + offs, values * inv_t, mask=offs < K)  # top-K of z is top-K of z/T


# The running top-K merge (tl.topk's sorting network) holds BLOCK_V / (32·warps) values a thread: at
# 16 (2048/4, 4096/8) or 2048/16 on sm_80 ptxas spilled 4-40 B a thread for K = 16 / 64 (AOT sweep,
# tests/kernels/test_triton_aot.py with VISD_AOT_FULL=1, Triton 3.9). These five never spill.
_CONFIGS = [triton.Config({"BLOCK_V": b}, num_warps=w)
            for b, w in ((1024, 4), (1024, 8), (1024, 16), (2048, 8), (4096, 16))]
_TUNED = triton.autotune(_CONFIGS, key=["V", "K_PAD", "SAMPLED_TOKEN"])(_teacher_topk_kernel)


def teacher_topk_forward(logits: torch.Tensor, tokens: torch.Tensor, k: int, temperature: float):
    n, vocab = logits.shape
    f32 = dict(dtype=torch.float32, device=logits.device)
    ids = torch.empty((n, k), dtype=torch.long, device=logits.device)
    topk_logits, token_logits = torch.empty((n, k), **f32), torch.empty(n, **f32)
    token_logprobs = torch.empty(n if k == 0 else 0, **f32)
    if n:
        k_pad = triton.next_power_of_2(max(k, 1))
        if k_pad > 1024:
            raise ValueError(f"the Triton teacher top-K supports K <= 1024, got {k}")
        args = (logits, logits.stride(0), tokens, ids, topk_logits, token_logits,
                token_logprobs if k == 0 else token_logits,
                vocab, k, 1.0 / temperature)
        if INTERPRETED:
            _teacher_topk_kernel[(n,)](*args, K_PAD=k_pad, SAMPLED_TOKEN=k == 0,
                                       BLOCK_V=max(INTERPRETER_TOPK_BLOCK_V, k_pad))
        else:
            _TUNED[(n,)](*args, K_PAD=k_pad, SAMPLED_TOKEN=k == 0)
    return ids, topk_logits, token_logits, token_logprobs
