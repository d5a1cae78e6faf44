"""Triton: the fused VISD policy loss (visd eq. 3–7, 16–17) straight from student logits, one launch.

Per token (one program each, flat grid): stream the row for the online logsumexp (+ entropy), gather
the student logits at U_t = TopK(teacher) ∪ {y_t} for Δ_t, then the O(1) math (m_t, Â_t, ρ_t, the
token loss and c_t = w_t·∂ℓ_t/∂log π(y_t)), then write c_t·(onehot(y_t) − softmax)/T tile by tile
into the gradient buffer, which may be the logits buffer itself (in place, as Liger does). Tokens
with c_t = 0 (masked, clipped, zero advantage) write zeros without the softmax sweep.
"""

import torch
import triton
import triton.language as tl

from kernels.triton_rows import (INTERPRETED, INTERPRETER_BLOCK_V, autotune_configs, row_logsumexp,
                                 write_logprob_grad, write_zeros)

__all__ = ["INTERPRETED", "policy_loss_forward", "DELTA_NONE", "DELTA_TENSOR", "DELTA_SAMPLED_TOKEN",
           "DELTA_SUPPORT"]

DELTA_NONE, DELTA_TENSOR, DELTA_SAMPLED_TOKEN, DELTA_SUPPORT = 0, 1, 2, 3  # where Δ_t comes from
# the same codes as the constexpr globals a compiled kernel may read
_NONE, _TENSOR, _SAMPLED_TOKEN, _SUPPORT = (tl.constexpr(code) for code in
                                            (DELTA_NONE, DELTA_TENSOR, DELTA_SAMPLED_TOKEN, DELTA_SUPPORT))
STAT_ROW_COUNT = 9  # len(kernels.stats.STAT_ROWS)
_STAT_ROWS = tl.constexpr(STAT_ROW_COUNT)  # compiled kernels may only read constexpr globals


@triton.jit
def _support_logratio(row, y, student_y, ids_ptr, teacher_ptr, teacher_y, K, inv_t, K_PAD: tl.constexpr):
    """Δ_t on U_t (eq. 20–22): both sides renormalized on the support, so only K + 1 logits each."""
    offs = tl.arange(0, K_PAD)
    valid = offs < K
    ids = tl.load(ids_ptr + offs, mask=valid, other=0)
    teacher = tl.load(teacher_ptr + offs, mask=valid, other=float("-inf"))
    student = tl.where(valid, tl.load(row + ids, mask=valid, other=0.0).to(tl.float32) * inv_t, float("-inf"))
    y_in_topk = tl.sum(tl.where(valid & (ids == y), 1, 0), axis=0) > 0
    max_t = tl.maximum(tl.max(teacher, axis=0), teacher_y)
    max_s = tl.maximum(tl.max(student, axis=0), student_y)
    sum_t = tl.sum(tl.exp(teacher - max_t), axis=0) + tl.where(y_in_topk, 0.0, tl.exp(teacher_y - max_t))
    sum_s = tl.sum(tl.exp(student - max_s), axis=0) + tl.where(y_in_topk, 0.0, tl.exp(student_y - max_s))
    return (teacher_y - max_t - tl.log(sum_t)) - (student_y - max_s - tl.log(sum_s))  # eq. 21–22


@triton.jit
def _policy_loss_kernel(logits_ptr, row_stride, out_ptr, out_stride, tokens_ptr, old_ptr, adv_ptr, weight_ptr,
                        delta_ptr, ids_ptr, teacher_ptr, teacher_y_ptr, teacher_logprob_ptr, stats_ptr, N, V, K,
                        inv_t, lam, w_lo, w_hi, r_lo, r_hi, DELTA_MODE: tl.constexpr, K_PAD: tl.constexpr,
                        WITH_ENTROPY: tl.constexpr, COMPUTE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    row = logits_ptr + t * row_stride
    out_row = out_ptr + t * out_stride
    weight = tl.load(weight_ptr + t)  # aggregation weight w_t; 0 = masked token
    if weight == 0:
        for r in tl.static_range(_STAT_ROWS):
            tl.store(stats_ptr + r * N + t, 0.0)
        if COMPUTE_GRAD:
            write_zeros(out_row, V, BLOCK_V)
    else:
        y = tl.load(tokens_ptr + t)
        row_max, log_sum, entropy = row_logsumexp(row, V, inv_t, BLOCK_V, WITH_ENTROPY)
        student_y = tl.load(row + y).to(tl.float32) * inv_t
        logprob = (student_y - row_max) - log_sum  # full vocabulary: ρ_t always uses it
        adv = tl.load(adv_ptr + t)
        delta = 0.0
        token_weight = 1.0
        weight_clip = 0.0
        if DELTA_MODE == _TENSOR:
            delta = tl.load(delta_ptr + t)
        if DELTA_MODE == _SAMPLED_TOKEN:
            delta = tl.load(teacher_logprob_ptr + t) - logprob  # log q(y_t) − log π(y_t), full vocabulary
        if DELTA_MODE == _SUPPORT:
            delta = _support_logratio(row, y, student_y, ids_ptr + t * K, teacher_ptr + t * K,
                                      tl.load(teacher_y_ptr + t), K, inv_t, K_PAD)
        if DELTA_MODE != _NONE:
            w = tl.exp(tl.where(adv > 0, delta, tl.where(adv < 0, -delta, 0.0)))  # eq. 5
            token_weight = tl.minimum(tl.maximum(w, w_lo), w_hi)                   # eq. 6
            weight_clip = tl.where(w < w_lo, -1.0, tl.where(w > w_hi, 1.0, 0.0))
        adv_hat = adv * ((1.0 - lam) + lam * token_weight)  # eq. 7
        ratio = tl.exp(logprob - tl.load(old_ptr + t))      # eq. 17
        unclipped = ratio * adv_hat
        clipped = tl.minimum(tl.maximum(ratio, r_lo), r_hi) * adv_hat
        ratio_clipped = clipped < unclipped
        coef = weight * tl.where(ratio_clipped, 0.0, -unclipped)  # c_t = w_t·∂(−ρÂ)/∂log π
        tl.store(stats_ptr + 0 * N + t, logprob)
        tl.store(stats_ptr + 1 * N + t, delta)
        tl.store(stats_ptr + 2 * N + t, token_weight)
        tl.store(stats_ptr + 3 * N + t, adv_hat)
        tl.store(stats_ptr + 4 * N + t, ratio)
        tl.store(stats_ptr + 5 * N + t, -tl.minimum(unclipped, clipped))  # eq. 16, negated
        tl.store(stats_ptr + 6 * N + t, tl.where(ratio_clipped, 1.0, 0.0))
        tl.store(stats_ptr + 7 * N + t, weight_clip)
        tl.store(stats_ptr + 8 * N + t, entropy)
        if COMPUTE_GRAD:
            if coef != 0:
                write_logprob_grad(row, out_row, V, y, inv_t, row_max, log_sum, coef, BLOCK_V)
            else:
                write_zeros(out_row, V, BLOCK_V)


_CONFIGS = autotune_configs(blocks=(2048, 4096, 8192), warps=(8, 16))
_KEY = ["V", "K_PAD", "DELTA_MODE", "WITH_ENTROPY", "COMPUTE_GRAD"]
_TUNED = triton.autotune(_CONFIGS, key=_KEY)(_policy_loss_kernel)
# In place, a benchmarking run would read gradients written by the previous one: restore the logits.
_TUNED_IN_PLACE = triton.autotune(_CONFIGS, key=_KEY, restore_value=["logits_ptr"])(_policy_loss_kernel)


def policy_loss_forward(logits, tokens, old_logprobs, advantages, loss_weights, delta_mode, delta, support_ids,
                        support_logits, support_token_logits, support_token_logprobs, lam, eps_w, clip_low, clip_high,
                        temperature, with_entropy, grad_out):
    """-> (loss [], stats [9, N]); writes the gradient into grad_out (may be logits) when given."""
    n, vocab = logits.shape
    stats = torch.empty((STAT_ROW_COUNT, n), dtype=torch.float32, device=logits.device)
    if n:
        k = support_ids.shape[1] if support_ids is not None else 0
        dummy = stats  # pointer for inputs the chosen DELTA_MODE never reads
        out = grad_out if grad_out is not None else logits
        args = (logits, logits.stride(0), out, out.stride(0), tokens, old_logprobs, advantages, loss_weights,
                dummy if delta is None else delta, dummy if support_ids is None else support_ids,
                dummy if support_logits is None else support_logits,
                dummy if support_token_logits is None else support_token_logits,
                dummy if support_token_logprobs is None else support_token_logprobs, stats, n, vocab, k,
                1.0 / temperature, lam, 1.0 - eps_w, 1.0 + eps_w, 1.0 - clip_low, 1.0 + clip_high)
        flags = dict(DELTA_MODE=delta_mode, K_PAD=triton.next_power_of_2(max(k, 1)), WITH_ENTROPY=with_entropy,
                     COMPUTE_GRAD=grad_out is not None)
        if INTERPRETED:
            _policy_loss_kernel[(n,)](*args, **flags, BLOCK_V=INTERPRETER_BLOCK_V)
        elif grad_out is not None and grad_out.data_ptr() == logits.data_ptr():
            _TUNED_IN_PLACE[(n,)](*args, **flags)
        else:
            _TUNED[(n,)](*args, **flags)
    loss = (stats[5].double() * loss_weights.double()).sum().float()  # Σ_t w_t ℓ_t, in fp64 then fp32
    return loss, stats
