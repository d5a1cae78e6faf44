"""The fused ops from hidden states: lm_head's matmul fused into kernels.ops' token log-probs, teacher
top-K summary and VISD policy loss (visd eq. 3–7, 16–17), token chunk by token chunk, so that no
[N, V] logits tensor ever exists.

    linear_token_logprobs(hidden, lm_head_weight, tokens, temperature=1.0, *, chunk_tokens=256)
        -> log π(y_t) [N] (fp32), differentiable w.r.t. hidden and lm_head_weight
    linear_teacher_topk(hidden, lm_head_weight, tokens, k=16, temperature=1.0, *, chunk_tokens=256)
        -> TeacherSupport, no gradient
    linear_visd_policy_loss(hidden, lm_head_weight, tokens, old_logprobs, advantages, delta, seq_lens, lam,
                            eps_w=0.2, clip_low=0.2, clip_high=0.2, temperature=1.0, *, chunk_tokens=256,
                            loss_mask=None, aggregation="seq_mean_token_mean", return_stats=False,
                            with_entropy=False)
        -> loss, or (loss, PolicyLossStats); differentiable w.r.t. hidden and lm_head_weight

hidden [N, H] and lm_head_weight [V, H] (the embedding itself when tied) share one dtype and device.
A chunk's logits are hidden_CH @ W.T in that dtype — what lm_head computes — and then the row kernels
of kernels.ops run on them; every argument after the first two means what it means there.

Design: chunked like Liger-Kernel's fused linear cross-entropy, not fully fused like Cut Cross-Entropy.
Per chunk of C ≤ chunk_tokens tokens: logits_CV = hidden_CH @ W.T (cuBLAS on CUDA, the CPU BLAS on
CPU, at full matmul speed), then the existing row kernel (Triton on CUDA, C++ on CPU: no new kernel
code, so no new int64-offset or grid-size risk; each launch has C programs), then at once
grad_hidden_CH = dlogits_CV @ W and grad_W += dlogits_CV.T @ hidden_CH, so the chunk's logits are
dead before the next chunk is made. CCE's full fusion would save the [C, V] buffer too, but needs its
own matmul-softmax kernels (a Triton matmul to tune per GPU against cuBLAS, and a C++ twin), all tested
afresh; chunking reuses the row kernels already tested against kernels.reference.
Memory beyond the inputs and the two gradients: one [C, V] logits chunk (two in
linear_token_logprobs' backward), O(N) per-token state (and the O(N·K) support), and, for bf16 or
other 16-bit weights, grad_W's [V, H] fp32 accumulator while the op runs: chunks are summed in fp32
and rounded once, as one unchunked matmul would (summing bf16 partial products would round once per
chunk).

- linear_visd_policy_loss returns a scalar, so its forward computes both gradients as it goes (the
  row kernel writes dL/dlogits over the chunk's logits in place, as inplace_backward does) and the
  backward only scales them by grad_output: no recompute. The aggregation weights w_t of eq. 16 depend
  on whole sequences (token-mean within a sequence, mean over sequences), and a sequence may span
  chunks: they are computed for all N first (kernels.objectives.aggregation_weights) and each chunk's
  kernel gets its slice, so Σ_chunks Σ_t w_t ℓ_t is the loss and w_t·∂ℓ_t/∂z_t each row's gradient,
  exactly as in the unchunked op; the chunks' per-token stats are concatenated (PolicyLossStats).
- linear_token_logprobs returns a vector, whose gradient depends on grad_output: the forward keeps
  each token's (max, log-sum) normalizer, the backward recomputes each chunk's logits (one extra
  matmul per chunk) and runs the fused backward row kernel on them.

Registered as torch.library custom ops, like kernels.ops: visd::linear_policy_loss and
visd::linear_token_logprobs (+ its backward), with register_fake and register_autograd;
linear_teacher_topk is a loop over visd::teacher_topk. The reference backend (forced, fp64 on CUDA,
or a missing C++ library) materializes hidden @ W.T whole: it is the truth path, slow by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from kernels import backend, objectives, ops, reference
from kernels.stats import STAT_ROWS, PolicyLossStats
from kernels.support import TeacherSupport

# [256, 151,936] logits: 148 MB in fp32, 74 MB in bf16 — no bigger than lm_head's [V, H] weight gradient
# once H >= 256 (every released Qwen2.5-VL has H >= 2048). The [256, H] x [H, V] matmuls still run at
# BLAS speed, and each row-kernel launch has 256 programs.
DEFAULT_CHUNK_TOKENS = 256


def _check_linear(hidden: Tensor, weight: Tensor, tokens: Tensor, chunk_tokens: int) -> None:
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden must be [N, H] and lm_head_weight [V, H], got {tuple(hidden.shape)} and "
                         f"{tuple(weight.shape)}")
    if hidden.dtype != weight.dtype or hidden.dtype not in ops._LOGIT_DTYPES or hidden.device != weight.device:
        raise ValueError(f"hidden and lm_head_weight must share one fp32/bf16/fp64 dtype and device, got "
                         f"{hidden.dtype} on {hidden.device} and {weight.dtype} on {weight.device}")
    ops._check_tokens(tokens, hidden.shape[0], weight.shape[0], hidden.device)
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")


def _chunks(n: int, chunk_tokens: int) -> list[slice]:
    """Consecutive token slices; one empty slice for N = 0, so every op runs its kernel at least once."""
    return [slice(i, min(i + chunk_tokens, n)) for i in range(0, n, chunk_tokens)] or [slice(0, 0)]


def _logits(hidden_CH: Tensor, weight_VH: Tensor) -> Tensor:
    return hidden_CH @ weight_VH.T  # [C, V] in the compute dtype: exactly lm_head's output


def _new_weight_grad(weight: Tensor) -> Tensor:
    return torch.zeros(weight.shape, dtype=ops._acc_dtype(weight.dtype), device=weight.device)


def _add_weight_grad_(grad_w: Tensor, dlogits_CV: Tensor, hidden_CH: Tensor) -> None:
    """grad_W += dlogits.T @ hidden, always in place. 16-bit chunks are upcast to the fp32 accumulator's
    dtype first: a [C, V] fp32 copy (156 MB at C = 256, V = 152,064) instead of a 16-bit [V, H] product
    to add afterwards (1.09 GB for Qwen2.5-VL-7B's lm_head: the planner found it outweighed the logits
    the op avoids)."""
    if grad_w.dtype != dlogits_CV.dtype:
        dlogits_CV, hidden_CH = dlogits_CV.to(grad_w.dtype), hidden_CH.to(grad_w.dtype)
    grad_w.addmm_(dlogits_CV.T, hidden_CH)


def _weight_grad_or_empty(grad_w: Tensor | None, weight: Tensor) -> Tensor:
    return weight.new_empty(0) if grad_w is None else grad_w.to(weight.dtype)


# ---- visd::linear_token_logprobs ----------------------------------------------------------------

@torch.library.custom_op("visd::linear_token_logprobs", mutates_args=())
def _linear_token_logprobs_op(hidden: Tensor, weight: Tensor, tokens: Tensor, temperature: float, chunk_tokens: int,
                              impl: str) -> tuple[Tensor, Tensor, Tensor]:
    """-> (log π(y_t), max of z/T, log Σ exp(z/T − max)), [N] each; the normalizer is kept for the backward."""
    parts = [ops._token_logprobs_op(_logits(hidden[rows], weight), tokens[rows], temperature, False, impl)[:3]
             for rows in _chunks(hidden.shape[0], chunk_tokens)]
    return tuple(torch.cat(column) for column in zip(*parts))


@_linear_token_logprobs_op.register_fake
def _(hidden, weight, tokens, temperature, chunk_tokens, impl):
    n, acc = hidden.shape[0], ops._acc_dtype(hidden.dtype)
    return tuple(hidden.new_empty(n, dtype=acc) for _ in range(3))


@torch.library.custom_op("visd::linear_token_logprobs_backward", mutates_args=())
def _linear_token_logprobs_backward_op(hidden: Tensor, weight: Tensor, tokens: Tensor, row_max: Tensor,
                                       log_sum: Tensor, grad_logprobs: Tensor, temperature: float, grad_hidden: bool,
                                       grad_weight: bool, chunk_tokens: int, impl: str) -> tuple[Tensor, Tensor]:
    """-> (dL/dhidden or an empty tensor, dL/dW or an empty tensor), recomputing each chunk's logits."""
    g_hidden = torch.empty_like(hidden) if grad_hidden else hidden.new_empty(0)
    g_weight = _new_weight_grad(weight) if grad_weight else None
    for rows in _chunks(hidden.shape[0], chunk_tokens):
        dlogits = ops._token_logprobs_backward_op(_logits(hidden[rows], weight), tokens[rows], row_max[rows],
                                                  log_sum[rows], grad_logprobs[rows], temperature, impl)
        if grad_hidden:
            torch.mm(dlogits, weight, out=g_hidden[rows])
        if grad_weight:
            _add_weight_grad_(g_weight, dlogits, hidden[rows])
        del dlogits  # else it lives on while the next chunk's logits are made: two [C, V] buffers, not one
    return g_hidden, _weight_grad_or_empty(g_weight, weight)


@_linear_token_logprobs_backward_op.register_fake
def _(hidden, weight, tokens, row_max, log_sum, grad_logprobs, temperature, grad_hidden, grad_weight, chunk_tokens,
      impl):
    return (torch.empty_like(hidden) if grad_hidden else hidden.new_empty(0),
            torch.empty_like(weight) if grad_weight else weight.new_empty(0))


def _linear_token_logprobs_setup(ctx, inputs, output):
    hidden, weight, tokens, temperature, chunk_tokens, impl = inputs
    _, row_max, log_sum = output
    ctx.save_for_backward(hidden, weight, tokens, row_max, log_sum)  # under FSDP2 the root re-gathers W for this
    ctx.temperature, ctx.chunk_tokens, ctx.impl = temperature, chunk_tokens, impl
    ctx.mark_non_differentiable(row_max, log_sum)
    ctx.set_materialize_grads(False)


def _linear_token_logprobs_backward(ctx, grad_logprobs, _grad_max, _grad_log_sum):
    need_hidden, need_weight = ctx.needs_input_grad[:2]
    if grad_logprobs is None or not (need_hidden or need_weight):
        return None, None, None, None, None, None
    hidden, weight, tokens, row_max, log_sum = ctx.saved_tensors
    g_hidden, g_weight = _linear_token_logprobs_backward_op(
        hidden, weight, tokens, row_max, log_sum, grad_logprobs.to(row_max.dtype).contiguous(), ctx.temperature,
        need_hidden, need_weight, ctx.chunk_tokens, ctx.impl)
    return (g_hidden if need_hidden else None), (g_weight if need_weight else None), None, None, None, None


_linear_token_logprobs_op.register_autograd(_linear_token_logprobs_backward, setup_context=_linear_token_logprobs_setup)


# ---- visd::linear_policy_loss ---------------------------------------------------------------------

@torch.library.custom_op("visd::linear_policy_loss", mutates_args=())
def _linear_policy_loss_op(hidden: Tensor, weight: Tensor, tokens: Tensor, old_logprobs: Tensor, advantages: Tensor,
                           loss_weights: Tensor, delta: Optional[Tensor], support_ids: Optional[Tensor],
                           support_logits: Optional[Tensor], support_token_logits: Optional[Tensor],
                           support_token_logprobs: Optional[Tensor], lam: float, eps_w: float, clip_low: float,
                           clip_high: float, temperature: float, with_entropy: bool, grad_hidden: bool,
                           grad_weight: bool, chunk_tokens: int, impl: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> (loss, stats [len(STAT_ROWS), N], dL/dhidden or an empty tensor, dL/dW or an empty tensor), one
    chunk of logits at a time; `loss_weights` are the w_t of all N tokens (eq. 16)."""
    g_hidden = torch.empty_like(hidden) if grad_hidden else hidden.new_empty(0)
    g_weight = _new_weight_grad(weight) if grad_weight else None
    loss, stats = torch.zeros((), dtype=torch.float64, device=hidden.device), []
    for rows in _chunks(hidden.shape[0], chunk_tokens):
        h = hidden[rows]
        logits = _logits(h, weight)
        per_token = [None if x is None else x[rows] for x in (delta, support_ids, support_logits,
                                                                support_token_logits, support_token_logprobs)]
        args = (tokens[rows], old_logprobs[rows], advantages[rows], loss_weights[rows], *per_token, lam, eps_w,
                clip_low, clip_high, temperature, with_entropy)
        if grad_hidden or grad_weight:  # the kernel overwrites the chunk's logits with dL/dlogits
            chunk_loss, chunk_stats = ops._policy_loss_inplace_op(logits, *args, impl)
            if grad_hidden:
                torch.mm(logits, weight, out=g_hidden[rows])
            if grad_weight:
                _add_weight_grad_(g_weight, logits, h)
        else:
            chunk_loss, chunk_stats, _ = ops._policy_loss_op(logits, *args, False, impl)
        del logits  # else it lives on while the next chunk's logits are made: two [C, V] buffers, not one
        loss += chunk_loss  # each chunk's Σ_t w_t ℓ_t, summed in fp64
        stats.append(chunk_stats)
    return (loss.to(ops._acc_dtype(hidden.dtype)), torch.cat(stats, dim=1), g_hidden,
            _weight_grad_or_empty(g_weight, weight))


@_linear_policy_loss_op.register_fake
def _(hidden, weight, tokens, old_logprobs, advantages, loss_weights, delta, support_ids, support_logits,
      support_token_logits, support_token_logprobs, lam, eps_w, clip_low, clip_high, temperature, with_entropy,
      grad_hidden, grad_weight, chunk_tokens, impl):
    acc = ops._acc_dtype(hidden.dtype)
    return (hidden.new_empty((), dtype=acc), hidden.new_empty((len(STAT_ROWS), hidden.shape[0]), dtype=acc),
            torch.empty_like(hidden) if grad_hidden else hidden.new_empty(0),
            torch.empty_like(weight) if grad_weight else weight.new_empty(0))


def _linear_policy_loss_setup(ctx, inputs, output):
    _, stats, g_hidden, g_weight = output
    ctx.save_for_backward(g_hidden, g_weight)  # the gradients, computed in the forward; not W or hidden
    ctx.n_inputs = len(inputs)
    ctx.mark_non_differentiable(stats, g_hidden, g_weight)
    ctx.set_materialize_grads(False)


def _linear_policy_loss_backward(ctx, grad_loss, _grad_stats, _grad_hidden, _grad_weight):
    g_hidden, g_weight = ctx.saved_tensors
    need_hidden, need_weight = ctx.needs_input_grad[:2]
    rest = (None,) * (ctx.n_inputs - 2)
    if grad_loss is None:
        return (None, None) + rest
    return ((ops._scaled(g_hidden, grad_loss) if need_hidden else None),
            (ops._scaled(g_weight, grad_loss) if need_weight else None)) + rest


_linear_policy_loss_op.register_autograd(_linear_policy_loss_backward, setup_context=_linear_policy_loss_setup)


# ---- public API ---------------------------------------------------------------------------------

def linear_token_logprobs(hidden: Tensor, lm_head_weight: Tensor, tokens: Tensor, temperature: float = 1.0, *,
                          chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> Tensor:
    """log π(y_t) [N] from hidden states, as kernels.token_logprobs(hidden @ W.T, ...) but chunked;
    differentiable w.r.t. hidden and lm_head_weight (the SFT cross-entropy, self-distillation NLL)."""
    _check_linear(hidden, lm_head_weight, tokens, chunk_tokens)
    ops._check_temperature(temperature)
    impl = backend.resolve(hidden.device, hidden.dtype)
    if impl == "reference":
        return reference.token_logprobs(_logits(hidden, lm_head_weight), tokens, temperature)
    logprobs, _, _ = _linear_token_logprobs_op(hidden.contiguous(), lm_head_weight.contiguous(), tokens.contiguous(),
                                               float(temperature), int(chunk_tokens), impl)
    return logprobs


def linear_teacher_topk(hidden: Tensor, lm_head_weight: Tensor, tokens: Tensor, k: int = 16, temperature: float = 1.0,
                        *, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> TeacherSupport:
    """The O(N·K) teacher summary (eq. 3, 20) from hidden states, chunk by chunk; no gradient."""
    _check_linear(hidden, lm_head_weight, tokens, chunk_tokens)
    with torch.no_grad():
        return TeacherSupport.cat([ops.teacher_topk(_logits(hidden[rows], lm_head_weight), tokens[rows], k, temperature)
                                   for rows in _chunks(hidden.shape[0], chunk_tokens)])


def linear_visd_policy_loss(hidden: Tensor, lm_head_weight: Tensor, tokens: Tensor, old_logprobs: Tensor,
                            advantages: Tensor, delta: Tensor | TeacherSupport | None,
                            seq_lens: Tensor | Sequence[int], lam: float, eps_w: float = 0.2, clip_low: float = 0.2,
                            clip_high: float = 0.2, temperature: float = 1.0, *,
                            chunk_tokens: int = DEFAULT_CHUNK_TOKENS, loss_mask: Tensor | None = None,
                            aggregation: str = "seq_mean_token_mean", return_stats: bool = False,
                            with_entropy: bool = False):
    """The VISD clipped surrogate (eq. 16) with Â_t (eq. 5–7) from hidden states, as
    kernels.visd_policy_loss(hidden @ W.T, ...) but chunked; differentiable w.r.t. hidden and
    lm_head_weight. Returns the loss, or (loss, PolicyLossStats) with return_stats=True."""
    _check_linear(hidden, lm_head_weight, tokens, chunk_tokens)
    n = hidden.shape[0]
    ops._check_loss_args(n, lm_head_weight.shape[0], old_logprobs, advantages, delta, lam, eps_w, clip_low,
                         clip_high, temperature)
    impl = backend.resolve(hidden.device, hidden.dtype)
    if impl == "reference":
        return reference.visd_policy_loss(_logits(hidden, lm_head_weight), tokens, old_logprobs, advantages, delta,
                                          seq_lens, lam, eps_w, clip_low, clip_high, temperature, loss_mask=loss_mask,
                                          aggregation=aggregation, return_stats=return_stats,
                                          with_entropy=with_entropy)
    acc = ops._acc_dtype(hidden.dtype)
    # eq. 16's w_t over whole sequences, before any chunking: chunks may cut a sequence anywhere
    weights = objectives.aggregation_weights(seq_lens, n, loss_mask=loss_mask, aggregation=aggregation, dtype=acc,
                                             device=hidden.device)
    grad_on = torch.is_grad_enabled()
    loss, stats, _, _ = _linear_policy_loss_op(
        hidden.contiguous(), lm_head_weight.contiguous(),
        *ops._per_token_args(tokens, old_logprobs, advantages, weights, delta, acc), float(lam), float(eps_w),
        float(clip_low), float(clip_high), float(temperature), bool(with_entropy),
        grad_on and hidden.requires_grad, grad_on and lm_head_weight.requires_grad, int(chunk_tokens), impl)
    return (loss, PolicyLossStats.from_rows(stats, weights, with_entropy)) if return_stats else loss
