"""Group-relative advantages (visd eq. 14; the A that VISD reweights but never flips, eq. 27)."""
from __future__ import annotations

import torch


def group_advantages(rewards_B: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """A^(i) = (R^(i) − μ_G) / (σ_G + ε) within each group of `group_size` consecutive rollouts.

    σ_G is the unbiased (n − 1) standard deviation, as in the TRL-based GRPO code that
    Open-o3-Video and VisionCoach build on. A group whose rewards are all equal gets A = 0
    exactly: it carries no learning signal, and its tokens skip the gradient sweep.
    """
    if rewards_B.dim() != 1 or rewards_B.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards_B.shape)} do not split into groups of {group_size}")
    if group_size < 2:
        raise ValueError("group_size must be >= 2 for group-relative advantages")
    r = rewards_B.double().view(-1, group_size)
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True)       # unbiased
    adv = (r - mean) / (std + eps)
    adv = torch.where(std == 0, torch.zeros_like(adv), adv)
    return adv.view(-1).to(torch.float32)
