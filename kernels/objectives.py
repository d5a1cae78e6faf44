"""O(N) policy objectives on per-token quantities (log-probabilities, advantages, Δ_t): plain
PyTorch, shared by the reference and by callers of `kernels.token_logprobs`.

The only [N, V] work in any of these objectives is log π(y_t) and its gradient, which
`kernels.token_logprobs` fuses; everything here is elementwise or per sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

AGGREGATIONS = ("seq_mean_token_mean", "token_mean")


def token_weight(delta: Tensor, advantages: Tensor, eps_w: float) -> Tensor:
    """m_t = clip(exp(sign(A)·Δ_t), 1 − ε_w, 1 + ε_w)  (visd eq. 5–6). sign(0)·Δ is 0, even for Δ = ±inf."""
    signed = torch.where(advantages > 0, delta, torch.where(advantages < 0, -delta, torch.zeros_like(delta)))
    return torch.exp(signed).clamp(1.0 - eps_w, 1.0 + eps_w)


def reweighted_advantage(advantages: Tensor, weight: Tensor, lam: float) -> Tensor:
    """Â_t = A·((1 − λ) + λ·m_t)  (visd eq. 7); λ = 0 gives A exactly (plain GRPO)."""
    return advantages * ((1.0 - lam) + lam * weight)


def clipped_surrogate_loss(logprobs: Tensor, old_logprobs: Tensor, advantages_hat: Tensor,
                           clip_low: float, clip_high: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token −min(ρ_t Â_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) Â_t)  (visd eq. 16–17), with ρ_t and
    whether the clipped branch is the (strict) minimum, i.e. the token gets no gradient."""
    ratio = torch.exp(logprobs - old_logprobs)  # eq. 17
    unclipped = ratio * advantages_hat
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages_hat
    return -torch.minimum(unclipped, clipped), ratio, clipped < unclipped


def _seq_ids(seq_lens: Tensor | Sequence[int], n_tokens: int, device: torch.device) -> tuple[Tensor, int]:
    lens = torch.as_tensor(seq_lens, dtype=torch.long, device=device)
    if lens.dim() != 1 or bool((lens < 0).any()) or int(lens.sum()) != n_tokens:
        raise ValueError(f"seq_lens must be a [B] tensor of non-negative lengths summing to N={n_tokens}")
    return torch.repeat_interleave(torch.arange(lens.numel(), device=device), lens), lens.numel()


def aggregation_weights(seq_lens: Tensor | Sequence[int], n_tokens: int, *, loss_mask: Tensor | None = None,
                        aggregation: str = "seq_mean_token_mean", dtype: torch.dtype = torch.float32,
                        device: torch.device | None = None) -> Tensor:
    """w_t such that the loss is Σ_t w_t ℓ_t.

    seq_mean_token_mean (visd eq. 16): mean over the tokens of each sequence, then over sequences;
    token_mean: mean over all tokens of the batch. Masked tokens get w_t = 0; a sequence with no
    unmasked token is left out of the sequence mean; with no unmasked token at all every w_t is 0.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if loss_mask is not None and loss_mask.shape != (n_tokens,):
        raise ValueError(f"loss_mask must be [{n_tokens}], got {tuple(loss_mask.shape)}")
    device = device if device is not None else (loss_mask.device if loss_mask is not None else None)
    seq_id, n_seqs = _seq_ids(seq_lens, n_tokens, device)
    mask = (torch.ones(n_tokens, dtype=dtype, device=device) if loss_mask is None
            else (loss_mask != 0).to(dtype))
    if aggregation == "token_mean":
        return mask / mask.sum().clamp_min(1)
    tokens_per_seq = torch.zeros(n_seqs, dtype=dtype, device=device).index_add_(0, seq_id, mask)
    live_seqs = (tokens_per_seq > 0).sum().clamp_min(1)
    return mask / (tokens_per_seq[seq_id].clamp_min(1) * live_seqs)


def aggregate(values: Tensor, seq_lens: Tensor | Sequence[int], *, loss_mask: Tensor | None = None,
              aggregation: str = "seq_mean_token_mean") -> Tensor:
    """Σ_t w_t·values_t with the weights of `aggregation_weights`; masked values never leak (no 0·NaN)."""
    w = aggregation_weights(seq_lens, values.shape[0], loss_mask=loss_mask, aggregation=aggregation,
                            dtype=values.dtype, device=values.device)
    return torch.where(w > 0, w * values, torch.zeros_like(values)).sum()


def gspo_loss(logprobs: Tensor, old_logprobs: Tensor, seq_advantages: Tensor, seq_lens: Tensor | Sequence[int],
              *, clip_low: float = 3e-4, clip_high: float = 4e-4, loss_mask: Tensor | None = None) -> Tensor:
    """GSPO (Zheng et al. 2025, arXiv:2507.18071), VisionCoach's optimizer: a sequence-level ratio
    s_i = exp(mean_t log(π/π_old)) and loss = −mean_i min(s_i A_i, clip(s_i, 1 − ε_l, 1 + ε_h) A_i).
    The default ranges 3e-4 / 4e-4 are the ones the GSPO paper reports (the visioncoach paper gives
    none). `seq_advantages` is [B], one advantage per sequence."""
    n = logprobs.shape[0]
    seq_id, n_seqs = _seq_ids(seq_lens, n, logprobs.device)
    mask = (torch.ones(n, dtype=torch.bool, device=logprobs.device) if loss_mask is None else loss_mask != 0)
    log_ratio = torch.where(mask, logprobs - old_logprobs, torch.zeros_like(logprobs))
    zeros = torch.zeros(n_seqs, dtype=logprobs.dtype, device=logprobs.device)
    length = zeros.index_add(0, seq_id, mask.to(logprobs.dtype))
    seq_ratio = torch.exp(zeros.index_add(0, seq_id, log_ratio) / length.clamp_min(1))
    adv = seq_advantages.to(logprobs.dtype)
    per_seq = -torch.minimum(seq_ratio * adv, seq_ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv)
    live = length > 0
    return torch.where(live, per_seq, zeros).sum() / live.sum().clamp_min(1)


def self_distillation_nll(logprobs: Tensor, seq_lens: Tensor | Sequence[int], *,
                          loss_mask: Tensor | None = None) -> Tensor:
    """L_SD = −1/|S| Σ_j 1/|y_j| Σ_t log π(y_j,t)  (visioncoach eq. 1), over the distilled sequences."""
    return aggregate(-logprobs, seq_lens, loss_mask=loss_mask, aggregation="seq_mean_token_mean")


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(π ‖ π_ref): exp(r) − r − 1 with r = log π_ref − log π (≥ 0, unbiased
    under samples from π). VisionCoach adds β·aggregate(k3) to its loss with β = 0.04."""
    log_r = ref_logprobs - logprobs
    return torch.exp(log_r) - log_r - 1.0
