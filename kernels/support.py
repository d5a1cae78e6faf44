"""TeacherSupport: the O(N·K) summary that is all VISD keeps of a teacher replay (visd eq. 3, 20).

The teacher's logits are consumed chunk by chunk (`kernels.teacher_topk` on each chunk, then
`TeacherSupport.cat`) and never kept. Within U_t = TopK_K(q_t) ∪ {y_t} the renormalized teacher
log-probability is log q̃(y_t) = z_y/T − logsumexp_{u∈U_t} z_u/T (eq. 21): the full-vocabulary
normalizer cancels, so only K + 1 tempered logits per token are needed. K = 0 is the sampled-token
variant (Δ_t = log q(y_t) − log π(y_t)), whose summary is log q(y_t) itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TeacherSupport:
    topk_ids: Tensor      # [N, K] int64: teacher top-K, best first; ties go to the lower vocab index
    topk_logits: Tensor   # [N, K] teacher logits / T at topk_ids (fp32; fp64 for an fp64 teacher)
    token_logits: Tensor  # [N] teacher logit / T at the sampled token y_t
    token_logprobs: Tensor | None  # [N] log q(y_t) over the full vocabulary; present exactly when K = 0
    temperature: float

    def __post_init__(self) -> None:
        n, k = self.topk_ids.shape
        if self.topk_logits.shape != (n, k) or self.token_logits.shape != (n,):
            raise ValueError(f"TeacherSupport shapes disagree: ids {tuple(self.topk_ids.shape)}, "
                             f"logits {tuple(self.topk_logits.shape)}, token {tuple(self.token_logits.shape)}")
        if (k == 0) != (self.token_logprobs is not None):
            raise ValueError("TeacherSupport needs token_logprobs (log q(y_t)) exactly when K = 0")
        if self.token_logprobs is not None and self.token_logprobs.shape != (n,):
            raise ValueError(f"TeacherSupport token_logprobs must be [{n}], got {tuple(self.token_logprobs.shape)}")

    @property
    def k(self) -> int:
        return self.topk_ids.shape[1]

    @property
    def n_tokens(self) -> int:
        return self.topk_ids.shape[0]

    @staticmethod
    def cat(parts: list[TeacherSupport]) -> TeacherSupport:
        """Joins the summaries of consecutive token chunks (the teacher replay runs chunk by chunk)."""
        if not parts:
            raise ValueError("TeacherSupport.cat needs at least one part")
        if len({p.k for p in parts}) != 1 or len({p.temperature for p in parts}) != 1:
            raise ValueError("TeacherSupport.cat: parts differ in K or temperature")
        return TeacherSupport(
            topk_ids=torch.cat([p.topk_ids for p in parts]),
            topk_logits=torch.cat([p.topk_logits for p in parts]),
            token_logits=torch.cat([p.token_logits for p in parts]),
            token_logprobs=None if parts[0].token_logprobs is None else torch.cat([p.token_logprobs for p in parts]),
            temperature=parts[0].temperature,
        )
