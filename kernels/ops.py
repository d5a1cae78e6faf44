"""The public fused ops (DESIGN.md's stable API) and their torch.library registrations.

Each public function validates its arguments, picks a backend (kernels.backend.resolve), and either
calls the PyTorch reference (differentiable by plain autograd) or a `visd::*` custom op whose
implementation runs the C++ kernel (torch.ops.visd_cpu.*) or the Triton launcher. The custom ops carry
register_fake (shapes for torch.compile / meta) and register_autograd (the fused backward).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from kernels import backend, objectives, reference
from kernels.stats import STAT_ROWS, PolicyLossStats
from kernels.support import TeacherSupport

_LOGIT_DTYPES = (torch.float32, torch.bfloat16, torch.float64)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_logits(logits: Tensor, tokens: Tensor, name: str = "logits") -> None:
    if logits.dim() != 2 or logits.dtype not in _LOGIT_DTYPES:
        raise ValueError(f"{name} must be [N, V] fp32/bf16/fp64, got {tuple(logits.shape)} {logits.dtype}")
    _check_tokens(tokens, *logits.shape, logits.device)


def _check_tokens(tokens: Tensor, n: int, vocab: int, device: torch.device) -> None:
    if tokens.shape != (n,) or tokens.dtype != torch.long or tokens.device != device:
        raise ValueError(f"tokens must be int64 [{n}] on {device}, got "
                         f"{tuple(tokens.shape)} {tokens.dtype} on {tokens.device}")
    if tokens.numel() and not (0 <= int(tokens.min()) and int(tokens.max()) < vocab):
        raise ValueError(f"tokens must lie in [0, {vocab})")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _rows_contiguous(logits: Tensor) -> Tensor:
    return logits if logits.stride(-1) == 1 else logits.contiguous()


def _scaled(grad: Tensor, grad_output: Tensor) -> Tensor:
    """grad_output · grad. The loss is usually the root of backward (grad_output = 1): then, in eager
    mode, hand the buffer over without another [N, V] pass. Under tracing (FakeTensor/FunctionalTensor
    subclasses) the value is unknown, so multiply and let the compiler fuse it."""
    if type(grad_output) is torch.Tensor and bool(grad_output == 1):
        return grad
    return grad * grad_output.to(grad.dtype)


# ---- visd::token_logprobs -------------------------------------------------------------------------

@torch.library.custom_op("visd::token_logprobs", mutates_args=())
def _token_logprobs_op(logits: Tensor, tokens: Tensor, temperature: float, with_entropy: bool,
                       impl: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> (log π(y_t), max of z/T, log Σ exp(z/T − max), entropy or an empty tensor): the normalizer
    stays split in two so the backward's softmax is as accurate as torch's."""
    if impl == "cpp":
        return torch.ops.visd_cpu.token_logprobs(logits, tokens, temperature, with_entropy)
    return backend.triton_module("token_logprobs").token_logprobs_forward(logits, tokens, temperature, with_entropy)


@_token_logprobs_op.register_fake
def _(logits, tokens, temperature, with_entropy, impl):
    n, acc = logits.shape[0], _acc_dtype(logits.dtype)
    return (logits.new_empty(n, dtype=acc), logits.new_empty(n, dtype=acc), logits.new_empty(n, dtype=acc),
            logits.new_empty(n if with_entropy else 0, dtype=acc))


@torch.library.custom_op("visd::token_logprobs_backward", mutates_args=())
def _token_logprobs_backward_op(logits: Tensor, tokens: Tensor, row_max: Tensor, log_sum: Tensor,
                                grad_logprobs: Tensor, temperature: float, impl: str) -> Tensor:
    if impl == "cpp":
        return torch.ops.visd_cpu.token_logprobs_backward(logits, tokens, row_max, log_sum, grad_logprobs,
                                                          temperature)
    return backend.triton_module("token_logprobs").token_logprobs_backward(logits, tokens, row_max, log_sum,
                                                                            grad_logprobs, temperature)


@_token_logprobs_backward_op.register_fake
def _(logits, tokens, row_max, log_sum, grad_logprobs, temperature, impl):
    return torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)


def _token_logprobs_setup(ctx, inputs, output):
    logits, tokens, temperature, _, impl = inputs
    _, row_max, log_sum, entropy = output
    ctx.save_for_backward(logits, tokens, row_max, log_sum)
    ctx.temperature, ctx.impl = temperature, impl
    ctx.mark_non_differentiable(row_max, log_sum, entropy)  # entropy is a metric, not a training signal
    ctx.set_materialize_grads(False)


def _token_logprobs_backward(ctx, grad_logprobs, _grad_max, _grad_log_sum, _grad_entropy):
    if grad_logprobs is None:
        return None, None, None, None, None
    logits, tokens, row_max, log_sum = ctx.saved_tensors
    grad = _token_logprobs_backward_op(logits, tokens, row_max, log_sum,
                                       grad_logprobs.to(row_max.dtype).contiguous(), ctx.temperature, ctx.impl)
    return grad, None, None, None, None


_token_logprobs_op.register_autograd(_token_logprobs_backward, setup_context=_token_logprobs_setup)


# ---- visd::teacher_topk -------------------------------------------------------------------------

@torch.library.custom_op("visd::teacher_topk", mutates_args=())
def _teacher_topk_op(logits: Tensor, tokens: Tensor, k: int, temperature: float,
                     impl: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if impl == "cpp":
        return torch.ops.visd_cpu.teacher_topk(logits, tokens, k, temperature)
    return backend.triton_module("teacher_topk").teacher_topk_forward(logits, tokens, k, temperature)


@_teacher_topk_op.register_fake
def _(logits, tokens, k, temperature, impl):
    n, acc = logits.shape[0], _acc_dtype(logits.dtype)  # ids, top-K logits, logit at y_t, log q(y_t) if K = 0
    return (logits.new_empty((n, k), dtype=torch.long), logits.new_empty((n, k), dtype=acc),
            logits.new_empty(n, dtype=acc), logits.new_empty(n if k == 0 else 0, dtype=acc))


# ---- visd::policy_loss (functional, differentiable) and visd::policy_loss_inplace_ ---------------

def _run_policy_loss(impl, logits, tokens, old_logprobs, advantages, loss_weights, delta, support_ids,
                     support_logits, support_token_logits, support_token_logprobs, lam, eps_w, clip_low, clip_high,
                     temperature, with_entropy, grad_out):
    if impl == "cpp":
        return torch.ops.visd_cpu.policy_loss(logits, tokens, old_logprobs, advantages, loss_weights, delta,
                                              support_ids, support_logits, support_token_logits,
                                              support_token_logprobs, lam, eps_w, clip_low, clip_high, temperature,
                                              with_entropy, grad_out)
    module = backend.triton_module("policy_loss")
    if delta is not None:
        mode = module.DELTA_TENSOR
    elif support_token_logits is None:
        mode = module.DELTA_NONE
    else:
        mode = module.DELTA_SAMPLED_TOKEN if support_ids.shape[1] == 0 else module.DELTA_SUPPORT
    return module.policy_loss_forward(logits, tokens, old_logprobs, advantages, loss_weights, mode, delta,
                                      support_ids, support_logits, support_token_logits, support_token_logprobs,
                                      lam, eps_w, clip_low, clip_high, temperature, with_entropy, grad_out)


@torch.library.custom_op("visd::policy_loss", mutates_args=())
def _policy_loss_op(logits: Tensor, tokens: Tensor, old_logprobs: Tensor, advantages: Tensor, loss_weights: Tensor,
                    delta: Optional[Tensor], support_ids: Optional[Tensor], support_logits: Optional[Tensor],
                    support_token_logits: Optional[Tensor], support_token_logprobs: Optional[Tensor], lam: float,
                    eps_w: float, clip_low: float, clip_high: float, temperature: float, with_entropy: bool,
                    compute_grad: bool, impl: str) -> tuple[Tensor, Tensor, Tensor]:
    """-> (loss, stats [len(STAT_ROWS), N], dL/dlogits computed in the forward sweep, or an empty tensor)."""
    grad = (torch.empty(logits.shape, dtype=logits.dtype, device=logits.device) if compute_grad
            else logits.new_empty(0))
    loss, stats = _run_policy_loss(impl, logits, tokens, old_logprobs, advantages, loss_weights, delta, support_ids,
                                   support_logits, support_token_logits, support_token_logprobs, lam, eps_w, clip_low,
                                   clip_high, temperature, with_entropy, grad if compute_grad else None)
    return loss, stats, grad


def _policy_loss_fake_outputs(logits: Tensor) -> tuple[Tensor, Tensor]:
    acc = _acc_dtype(logits.dtype)
    return logits.new_empty((), dtype=acc), logits.new_empty((len(STAT_ROWS), logits.shape[0]), dtype=acc)


@_policy_loss_op.register_fake
def _(logits, *args):
    compute_grad = args[-2]
    loss, stats = _policy_loss_fake_outputs(logits)
    return loss, stats, (torch.empty(logits.shape, dtype=logits.dtype, device=logits.device) if compute_grad
                         else logits.new_empty(0))


def _policy_loss_setup(ctx, inputs, output):
    _, stats, grad = output
    ctx.save_for_backward(grad)
    ctx.n_inputs = len(inputs)
    ctx.mark_non_differentiable(stats, grad)
    ctx.set_materialize_grads(False)  # else autograd would build a zero [N, V] "gradient" for `grad`


def _policy_loss_backward(ctx, grad_loss, _grad_stats, _grad_grad):
    (grad,) = ctx.saved_tensors
    return (None if grad_loss is None else _scaled(grad, grad_loss),) + (None,) * (ctx.n_inputs - 1)


_policy_loss_op.register_autograd(_policy_loss_backward, setup_context=_policy_loss_setup)


@torch.library.custom_op("visd::policy_loss_inplace_", mutates_args=("logits",))
def _policy_loss_inplace_op(logits: Tensor, tokens: Tensor, old_logprobs: Tensor, advantages: Tensor,
                            loss_weights: Tensor, delta: Optional[Tensor], support_ids: Optional[Tensor],
                            support_logits: Optional[Tensor], support_token_logits: Optional[Tensor],
                            support_token_logprobs: Optional[Tensor], lam: float, eps_w: float, clip_low: float,
                            clip_high: float, temperature: float, with_entropy: bool,
                            impl: str) -> tuple[Tensor, Tensor]:
    """Overwrites `logits` with dL/dlogits (declared as a mutation, so version counters catch misuse)."""
    return _run_policy_loss(impl, logits, tokens, old_logprobs, advantages, loss_weights, delta, support_ids,
                            support_logits, support_token_logits, support_token_logprobs, lam, eps_w, clip_low,
                            clip_high, temperature, with_entropy, logits)


@_policy_loss_inplace_op.register_fake
def _(logits, *args):
    return _policy_loss_fake_outputs(logits)


class _InPlacePolicyLoss(torch.autograd.Function):
    """Liger-style: the forward leaves the gradient in the logits buffer and backward hands it over,
    so no second [N, V] buffer exists. Mutable ops cannot take register_autograd, hence a Function."""

    @staticmethod
    def forward(ctx, logits, *args):
        loss, stats = _policy_loss_inplace_op(logits, *args)
        ctx.save_for_backward(logits)  # saved after the mutation: it now holds dL/dlogits
        ctx.n_args = len(args)
        ctx.mark_non_differentiable(stats)
        ctx.set_materialize_grads(False)
        return loss, stats

    @staticmethod
    def backward(ctx, grad_loss, _grad_stats):
        (grad,) = ctx.saved_tensors
        return (None if grad_loss is None else _scaled(grad, grad_loss),) + (None,) * ctx.n_args


# ---- public API ---------------------------------------------------------------------------------

def token_logprobs(logits: Tensor, tokens: Tensor, temperature: float = 1.0, *, return_entropy: bool = False):
    """log π(y_t) = log softmax(z_t/T)[y_t], [N], differentiable w.r.t. logits through a fused backward
    (the SFT cross-entropy, GSPO, self-distillation and KL all build on it). With return_entropy=True,
    returns (logprobs, entropy [N]) from the same sweep; the entropy carries no gradient."""
    _check_logits(logits, tokens)
    _check_temperature(temperature)
    impl = backend.resolve(logits.device, logits.dtype)
    if impl == "reference":
        lp = reference.token_logprobs(logits, tokens, temperature)
        return (lp, reference.token_entropy(logits.detach(), temperature)) if return_entropy else lp
    lp, _, _, entropy = _token_logprobs_op(_rows_contiguous(logits), tokens.contiguous(), float(temperature),
                                        bool(return_entropy), impl)
    return (lp, entropy) if return_entropy else lp


def teacher_topk(teacher_logits: Tensor, tokens: Tensor, k: int = 16, temperature: float = 1.0) -> TeacherSupport:
    """The O(N·K) teacher summary (eq. 3, 20) from one sweep over the teacher logits; no gradient."""
    _check_logits(teacher_logits, tokens, "teacher_logits")
    _check_temperature(temperature)
    if not 0 <= k <= teacher_logits.shape[1]:
        raise ValueError(f"k must be in [0, V={teacher_logits.shape[1]}], got {k}")
    impl = backend.resolve(teacher_logits.device, teacher_logits.dtype)
    if impl == "reference":
        return reference.teacher_topk(teacher_logits, tokens, k, temperature)
    ids, topk_logits, token_logits, logprobs = _teacher_topk_op(_rows_contiguous(teacher_logits.detach()),
                                                                tokens.contiguous(), int(k), float(temperature), impl)
    return TeacherSupport(topk_ids=ids, topk_logits=topk_logits, token_logits=token_logits,
                          token_logprobs=logprobs if k == 0 else None, temperature=float(temperature))


def _support_logratio(student_logits: Tensor, tokens: Tensor, support: TeacherSupport) -> Tensor:
    """Δ_t from the support (eq. 21–22): O(N·K) gathers of the student logits; K = 0 needs log π(y_t)."""
    with torch.no_grad():
        if support.k == 0:
            return support.token_logprobs - token_logprobs(student_logits, tokens, support.temperature)
        acc, t = support.topk_logits.dtype, support.temperature
        student_u = student_logits.gather(1, support.topk_ids).to(acc) / t
        student_y = student_logits.gather(1, tokens[:, None])[:, 0].to(acc) / t
        y_outside = ~(support.topk_ids == tokens[:, None]).any(-1)

        def log_renormalized(on_topk: Tensor, at_y: Tensor) -> Tensor:  # log p̃(y_t) on U_t, eq. 21
            extra = torch.where(y_outside, at_y, torch.full_like(at_y, float("-inf")))[:, None]
            return at_y - torch.logsumexp(torch.cat([on_topk, extra], dim=1), dim=1)

        return log_renormalized(support.topk_logits, support.token_logits) - log_renormalized(student_u, student_y)


def topk_logratio(student_logits: Tensor, teacher_logits: Tensor, tokens: Tensor, k: int = 16,
                  temperature: float = 1.0) -> Tensor:
    """Δ_t = log q̃(y_t) − log π̃(y_t) on U_t = TopK_K(teacher) ∪ {y_t} (eq. 4), [N], no gradient;
    k = 0: the sampled-token variant log q(y_t) − log π(y_t) over the full vocabulary."""
    _check_logits(student_logits, tokens, "student_logits")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} != student {tuple(student_logits.shape)}")
    impl = backend.resolve(student_logits.device, student_logits.dtype)
    if impl == "reference":
        _check_temperature(temperature)
        return reference.topk_logratio(student_logits, teacher_logits, tokens, k, temperature)
    return _support_logratio(student_logits, tokens, teacher_topk(teacher_logits, tokens, k, temperature))


def _check_loss_args(n: int, vocab: int, old_logprobs: Tensor, advantages: Tensor,
                     delta: Tensor | TeacherSupport | None, lam: float, eps_w: float, clip_low: float,
                     clip_high: float, temperature: float) -> None:
    for name, x in (("old_logprobs", old_logprobs), ("advantages", advantages)):
        if x.shape != (n,):
            raise ValueError(f"{name} must be [{n}], got {tuple(x.shape)}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1] (eq. 7), got {lam}")
    if not 0.0 <= eps_w < 1.0 or not 0.0 <= clip_low < 1.0 or not clip_high >= 0.0:
        raise ValueError(f"need 0 <= eps_w < 1, 0 <= clip_low < 1, clip_high >= 0; "
                         f"got {eps_w}, {clip_low}, {clip_high}")
    _check_temperature(temperature)
    if isinstance(delta, TeacherSupport):
        if delta.n_tokens != n or delta.k > vocab:
            raise ValueError(f"TeacherSupport covers {delta.n_tokens} tokens with K={delta.k}; need N={n}, K<=V")
        if delta.temperature != temperature:
            raise ValueError(f"teacher summarized at T={delta.temperature}, loss at T={temperature}: "
                             "the temperature must be the same everywhere")
    elif delta is not None and delta.shape != (n,):
        raise ValueError(f"delta must be [{n}], a TeacherSupport or None, got {tuple(delta.shape)}")


def _per_token_args(tokens: Tensor, old_logprobs: Tensor, advantages: Tensor, weights: Tensor,
                    delta: Tensor | TeacherSupport | None, acc: torch.dtype) -> tuple:
    """The per-token inputs of visd::policy_loss after the logits, from tokens to support_token_logprobs:
    detached, contiguous, in the accumulation dtype (shared with kernels.linear_ops)."""

    def per_token(x: Tensor) -> Tensor:
        return x.detach().to(acc).contiguous()

    if isinstance(delta, TeacherSupport):
        delta_args = (None, delta.topk_ids.contiguous(), per_token(delta.topk_logits), per_token(delta.token_logits),
                      None if delta.token_logprobs is None else per_token(delta.token_logprobs))
    else:
        delta_args = (None if delta is None else per_token(delta), None, None, None, None)
    return (tokens.contiguous(), per_token(old_logprobs), per_token(advantages), weights, *delta_args)


def visd_policy_loss(student_logits: Tensor, tokens: Tensor, old_logprobs: Tensor, advantages: Tensor,
                     delta: Tensor | TeacherSupport | None, seq_lens: Tensor | Sequence[int], lam: float,
                     eps_w: float = 0.2, clip_low: float = 0.2, clip_high: float = 0.2, temperature: float = 1.0,
                     *, loss_mask: Tensor | None = None, aggregation: str = "seq_mean_token_mean",
                     return_stats: bool = False, with_entropy: bool = False, inplace_backward: bool = False):
    """The VISD clipped surrogate (eq. 16) with token advantages Â_t (eq. 5–7), differentiable w.r.t.
    student_logits; see the package docstring for the keyword options. Returns the loss, or
    (loss, PolicyLossStats) with return_stats=True."""
    _check_logits(student_logits, tokens, "student_logits")
    n, vocab = student_logits.shape
    _check_loss_args(n, vocab, old_logprobs, advantages, delta, lam, eps_w, clip_low, clip_high, temperature)
    impl = backend.resolve(student_logits.device, student_logits.dtype)
    if impl == "reference":
        return reference.visd_policy_loss(student_logits, tokens, old_logprobs, advantages, delta, seq_lens, lam,
                                          eps_w, clip_low, clip_high, temperature, loss_mask=loss_mask,
                                          aggregation=aggregation, return_stats=return_stats,
                                          with_entropy=with_entropy)
    acc = _acc_dtype(student_logits.dtype)
    weights = objectives.aggregation_weights(seq_lens, n, loss_mask=loss_mask, aggregation=aggregation, dtype=acc,
                                             device=student_logits.device)
    args = (*_per_token_args(tokens, old_logprobs, advantages, weights, delta, acc), float(lam), float(eps_w),
            float(clip_low), float(clip_high), float(temperature), bool(with_entropy))
    logits = _rows_contiguous(student_logits)
    compute_grad = torch.is_grad_enabled() and student_logits.requires_grad
    if compute_grad and inplace_backward:
        loss, stats = _InPlacePolicyLoss.apply(logits, *args, impl)
    else:
        loss, stats, _ = _policy_loss_op(logits, *args, compute_grad, impl)
    return (loss, PolicyLossStats.from_rows(stats, weights, with_entropy)) if return_stats else loss
