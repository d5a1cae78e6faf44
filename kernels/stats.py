"""Per-token diagnostics of the VISD policy loss, produced by the same fused pass as the loss.

`kernels.visd_policy_loss(..., return_stats=True)` returns `(loss, PolicyLossStats)`; the kernels
write all fields in the forward sweep they already make, so metrics cost no extra pass over the
logits. `PolicyLossStats.summary()` reduces them to the scalars a trainer logs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Row order of the [len(STAT_ROWS), N] stats tensor the C++ and Triton kernels write.
STAT_ROWS = ("logprobs", "delta", "token_weight", "advantages_hat", "ratio", "token_loss",
             "ratio_clipped", "weight_clip", "entropy")


@dataclass(frozen=True)
class PolicyLossStats:
    """All fields are [N]; entries of masked tokens (loss weight 0) are 0."""

    logprobs: Tensor        # log π(y_t) over the full vocabulary (tempered)
    delta: Tensor           # Δ_t used for the token weight (eq. 4); 0 when delta is None
    token_weight: Tensor    # m_t (eq. 6); 1 when delta is None
    advantages_hat: Tensor  # Â_t (eq. 7)
    ratio: Tensor           # ρ_t (eq. 17)
    token_loss: Tensor      # −min(ρ_t Â_t, clip(ρ_t) Â_t), before aggregation (eq. 16)
    ratio_clipped: Tensor   # bool: the clipped branch is the min, so the token has no gradient
    weight_clip: Tensor     # int8: −1 / +1 when m_t sits at 1 − ε_w / 1 + ε_w, else 0
    loss_weights: Tensor    # aggregation weight of each token in the loss; > 0 marks tokens in it
    entropy: Tensor | None  # entropy of softmax(z/T), when requested

    @classmethod
    def from_rows(cls, rows: Tensor, loss_weights: Tensor, with_entropy: bool) -> PolicyLossStats:
        if rows.shape[0] != len(STAT_ROWS):
            raise ValueError(f"kernel wrote {rows.shape[0]} stat rows, expected {len(STAT_ROWS)}: {STAT_ROWS}")
        r = dict(zip(STAT_ROWS, rows.unbind(0)))
        return cls(
            logprobs=r["logprobs"], delta=r["delta"], token_weight=r["token_weight"],
            advantages_hat=r["advantages_hat"], ratio=r["ratio"], token_loss=r["token_loss"],
            ratio_clipped=r["ratio_clipped"] != 0, weight_clip=r["weight_clip"].to(torch.int8),
            loss_weights=loss_weights, entropy=r["entropy"] if with_entropy else None,
        )

    def summary(self) -> dict[str, Tensor]:
        """Token-means over the tokens in the loss, as 0-d tensors (no host sync until you read them)."""
        valid = (self.loss_weights > 0).to(self.delta.dtype)
        count = valid.sum().clamp_min(1)

        def mean(x: Tensor) -> Tensor:
            return (x.to(valid.dtype) * valid).sum() / count

        delta_mean = mean(self.delta)
        out = {
            "delta/mean": delta_mean,
            "delta/abs_mean": mean(self.delta.abs()),
            "delta/std": (mean((self.delta - delta_mean) ** 2)).sqrt(),
            "token_weight/mean": mean(self.token_weight),
            "token_weight/clip_low_frac": mean(self.weight_clip < 0),
            "token_weight/clip_high_frac": mean(self.weight_clip > 0),
            "ratio/mean": mean(self.ratio),
            "ratio/clip_frac": mean(self.ratio_clipped),
            "advantages_hat/abs_mean": mean(self.advantages_hat.abs()),
        }
        if self.entropy is not None:
            out["entropy/mean"] = mean(self.entropy)
        return out
