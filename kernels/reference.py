"""The numerical truth for every fused op: plain PyTorch that materializes full [N, V] softmaxes.

Slow and memory-hungry by design; the C++ and Triton kernels are tested against it (in fp64 for the
truth, in the input's working precision for the CCE baseline). Working precision: fp64 for fp64
logits, else fp32 (bf16 logits are upcast, as the kernels accumulate in fp32). The temperature T
divides the logits everywhere (π = softmax(z/T)), including before the teacher's top-K.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from kernels import objectives
from kernels.stats import PolicyLossStats
from kernels.support import TeacherSupport

_TOPK_ROW_CHUNK = 256  # rows per top-K step: bounds the [rows, V] temporaries of the tie resolution


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def tempered_logits(logits: Tensor, temperature: float) -> Tensor:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return logits.to(working_dtype(logits.dtype)) / temperature


def log_softmax(logits: Tensor, temperature: float = 1.0) -> Tensor:
    return torch.log_softmax(tempered_logits(logits, temperature), dim=-1)


def token_logprobs(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """log π(y_t) over the full vocabulary, [N]."""
    return log_softmax(logits, temperature).gather(-1, tokens[:, None])[:, 0]


def token_entropy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """H(softmax(z/T)) per token, [N]; masked (−inf) entries contribute 0."""
    logp = log_softmax(logits, temperature)
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)


def topk_ids(logits: Tensor, k: int) -> Tensor:
    """Indices of the k largest logits per row, best first, ties to the lower vocabulary index.

    torch.topk leaves the order among equal values unspecified, but not the k-th largest value:
    take every entry above it, then the lowest-index entries equal to it until there are k.
    """
    rows = []
    for x in logits.split(_TOPK_ROW_CHUNK):
        kth = torch.topk(x, k, dim=-1).values[:, -1:]
        above, at = x > kth, x == kth
        ties_needed = k - above.sum(-1, keepdim=True)
        chosen = above | (at & (at.cumsum(-1) <= ties_needed))
        ids = chosen.nonzero()[:, 1].view(x.shape[0], k)  # ascending index within each row
        order = torch.sort(x.gather(-1, ids), dim=-1, descending=True, stable=True).indices
        rows.append(ids.gather(-1, order))  # stable sort keeps lower indices first among ties
    return torch.cat(rows) if rows else logits.new_empty((0, k), dtype=torch.long)


def teacher_topk(teacher_logits: Tensor, tokens: Tensor, k: int = 16, temperature: float = 1.0) -> TeacherSupport:
    """The O(N·K) teacher summary (eq. 3, 20); see kernels.support.TeacherSupport."""
    z = tempered_logits(teacher_logits.detach(), temperature)
    token_logits = z.gather(-1, tokens[:, None])[:, 0]
    if k == 0:
        return TeacherSupport(topk_ids=tokens.new_empty((z.shape[0], 0)), topk_logits=z.new_empty((z.shape[0], 0)),
                              token_logits=token_logits,
                              token_logprobs=torch.log_softmax(z, -1).gather(-1, tokens[:, None])[:, 0],
                              temperature=temperature)
    ids = topk_ids(teacher_logits.detach(), k)  # top-K of z equals top-K of z/T for T > 0
    return TeacherSupport(topk_ids=ids, topk_logits=z.gather(-1, ids), token_logits=token_logits,
                          token_logprobs=None, temperature=temperature)


def support_mask(topk: Tensor, tokens: Tensor, vocab: int) -> Tensor:
    """U_t = TopK_K(q_t) ∪ {y_t} as a [N, V] boolean mask (eq. 3, 20)."""
    mask = torch.zeros(tokens.shape[0], vocab, dtype=torch.bool, device=tokens.device)
    mask.scatter_(1, topk, True)
    mask.scatter_(1, tokens[:, None], True)
    return mask


def _renormalized_token_logprob(logp: Tensor, mask: Tensor, tokens: Tensor) -> Tensor:
    """log p̃(y_t) with p̃ = p restricted to U_t and renormalized (eq. 21)."""
    on_support = torch.where(mask, logp, torch.full_like(logp, float("-inf")))
    return logp.gather(-1, tokens[:, None])[:, 0] - torch.logsumexp(on_support, -1)


def topk_logratio(student_logits: Tensor, teacher_logits: Tensor, tokens: Tensor, k: int = 16,
                  temperature: float = 1.0) -> Tensor:
    """Δ_t = log q̃(y_t) − log π̃(y_t) on U_t (eq. 4, 22), no gradient; k = 0: log q(y_t) − log π(y_t)."""
    with torch.no_grad():
        logq = log_softmax(teacher_logits, temperature)
        logp = log_softmax(student_logits, temperature)
        if k == 0:
            return logq.gather(-1, tokens[:, None])[:, 0] - logp.gather(-1, tokens[:, None])[:, 0]
        mask = support_mask(topk_ids(teacher_logits, k), tokens, logq.shape[-1])
        return _renormalized_token_logprob(logq, mask, tokens) - _renormalized_token_logprob(logp, mask, tokens)


def support_logratio(student_logits: Tensor, tokens: Tensor, support: TeacherSupport) -> Tensor:
    """Δ_t from a TeacherSupport and the student logits (eq. 21–22), no gradient."""
    with torch.no_grad():
        logp = log_softmax(student_logits, support.temperature)
        teacher_y = support.token_logits.to(logp.dtype)
        if support.k == 0:
            return support.token_logprobs.to(logp.dtype) - logp.gather(-1, tokens[:, None])[:, 0]
        in_topk = (support.topk_ids == tokens[:, None]).any(-1)
        teacher_u = torch.cat([support.topk_logits.to(logp.dtype),
                               torch.where(in_topk, float("-inf"), teacher_y)[:, None]], dim=-1)
        log_q_tilde = teacher_y - torch.logsumexp(teacher_u, -1)
        mask = support_mask(support.topk_ids, tokens, logp.shape[-1])
        return log_q_tilde - _renormalized_token_logprob(logp, mask, tokens)


def _aggregate_explicitly(token_loss: Tensor, seq_lens: Tensor | Sequence[int], mask: Tensor,
                          aggregation: str) -> Tensor:
    """eq. 16's (1/G) Σ_i (1/|y_i|) Σ_t, written as loops: the independent check of aggregation_weights."""
    if aggregation == "token_mean":
        return token_loss.sum() / mask.sum().clamp_min(1)
    lens = [int(n) for n in seq_lens]
    per_seq = [loss.sum() / m.sum() for loss, m in zip(token_loss.split(lens), mask.split(lens)) if m.any()]
    return torch.stack(per_seq).mean() if per_seq else token_loss.sum() * 0


def visd_policy_loss(student_logits: Tensor, tokens: Tensor, old_logprobs: Tensor, advantages: Tensor,
                     delta: Tensor | TeacherSupport | None, seq_lens: Tensor | Sequence[int], lam: float,
                     eps_w: float = 0.2, clip_low: float = 0.2, clip_high: float = 0.2, temperature: float = 1.0,
                     *, loss_mask: Tensor | None = None, aggregation: str = "seq_mean_token_mean",
                     return_stats: bool = False, with_entropy: bool = False):
    """The VISD clipped surrogate (eq. 16) with Â_t (eq. 5–7), differentiable w.r.t. student_logits."""
    if aggregation not in objectives.AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {objectives.AGGREGATIONS}, got {aggregation!r}")
    logprobs = token_logprobs(student_logits, tokens, temperature)
    dtype, n = logprobs.dtype, logprobs.shape[0]
    mask = torch.ones(n, dtype=torch.bool, device=logprobs.device) if loss_mask is None else loss_mask != 0
    adv = advantages.detach().to(dtype)
    if delta is None:
        d, m = torch.zeros_like(logprobs), torch.ones_like(logprobs)
    else:
        if isinstance(delta, TeacherSupport):
            d = support_logratio(student_logits, tokens, delta)
        else:
            d = delta.detach().to(dtype)
        m = objectives.token_weight(d, adv, eps_w)  # eq. 5–6
    adv_hat = objectives.reweighted_advantage(adv, m, lam)  # eq. 7
    token_loss, ratio, ratio_clipped = objectives.clipped_surrogate_loss(
        logprobs, old_logprobs.detach().to(dtype), adv_hat, clip_low, clip_high)  # eq. 16–17
    token_loss = torch.where(mask, token_loss, torch.zeros_like(token_loss))
    loss = _aggregate_explicitly(token_loss, seq_lens, mask, aggregation)
    if not return_stats:
        return loss

    def masked(x: Tensor) -> Tensor:
        return torch.where(mask, x, torch.zeros_like(x)).detach()

    w = torch.exp(torch.where(adv > 0, d, torch.where(adv < 0, -d, torch.zeros_like(d))))  # eq. 5, before the clip
    weight_clip = torch.where(w < 1 - eps_w, -1, torch.where(w > 1 + eps_w, 1, 0))
    if delta is None:
        weight_clip = torch.zeros_like(weight_clip)
    stats = PolicyLossStats(
        logprobs=masked(logprobs), delta=masked(d), token_weight=masked(m), advantages_hat=masked(adv_hat),
        ratio=masked(ratio), token_loss=masked(token_loss), ratio_clipped=mask & ratio_clipped,
        weight_clip=masked(weight_clip).to(torch.int8),
        loss_weights=objectives.aggregation_weights(seq_lens, n, loss_mask=loss_mask, aggregation=aggregation,
                                                    dtype=dtype, device=logprobs.device),
        entropy=masked(token_entropy(student_logits, temperature)) if with_entropy else None,
    )
    return loss, stats


# ---- the other objectives the trainer needs, from logits (their O(N) math lives in objectives) ----

def gspo_loss(logits: Tensor, tokens: Tensor, old_logprobs: Tensor, seq_advantages: Tensor,
              seq_lens: Tensor | Sequence[int], temperature: float = 1.0, **kwargs) -> Tensor:
    """GSPO sequence-level clipped surrogate (see objectives.gspo_loss)."""
    lp = token_logprobs(logits, tokens, temperature)
    return objectives.gspo_loss(lp, old_logprobs.to(lp.dtype), seq_advantages, seq_lens, **kwargs)


def self_distillation_nll(logits: Tensor, tokens: Tensor, seq_lens: Tensor | Sequence[int],
                          temperature: float = 1.0, loss_mask: Tensor | None = None) -> Tensor:
    """visioncoach eq. 1."""
    return objectives.self_distillation_nll(token_logprobs(logits, tokens, temperature), seq_lens, loss_mask=loss_mask)


def k3_kl(logits: Tensor, ref_logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-token k3 KL(π ‖ π_ref) at the sampled tokens (see objectives.k3_kl); no gradient into π_ref."""
    ref = token_logprobs(ref_logits.detach(), tokens, temperature)
    return objectives.k3_kl(token_logprobs(logits, tokens, temperature), ref)
