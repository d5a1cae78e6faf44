"""One small interface for every RL recipe, over the trainer's shared services.

    algo = build_algorithm(cfg, services)       # visd_core/algorithms/__init__.py
    metrics = algo.step(rl_step)                # one RL step: rollouts → rewards → loss → update

A recipe (GRPO/VISD, GSPO, VisionCoach) is one file that reads like its paper's algorithm box; what
every recipe needs — the next prompts, G rollouts of them, the verifier's rewards, a replay of the
policy's token log-probs, a backward and an optimizer step — is a service of the trainer
(`Services` below, implemented by visd_core.trainer.Trainer), so the loop stays a loop.

Under FSDP2 every forward is a collective, so a recipe must run the same number of forwards on every
rank: a choice that depends on a rank's own samples (a hard sample, a self-distillation candidate) is
first agreed on by an all-reduce, and a rank with nothing to do runs a padding pass whose loss is
multiplied by 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from visd_core.config import Config
from visd_core.data.model_inputs import PromptSample
from visd_core.parallel import Dist
from visd_core.rollout import Rollouts
from visd_core.tokenizer import QwenTokenizer


@dataclass
class GroupRollouts:
    """G rollouts of each of P prompts: rows p·G … p·G + G − 1 answer samples[p]."""
    samples: list[PromptSample]
    roll: Rollouts
    completions: list[list[int]]     # generated ids per row (stop token included)
    texts: list[str]                 # decoded completions without the stop token
    group_size: int
    results: list = field(default_factory=list)    # verifier results per row (rewards.reward.RewardResult)
    rewards: torch.Tensor | None = None            # [P·G] total rewards

    @property
    def owner(self) -> list[PromptSample]:
        return [self.samples[b // self.group_size] for b in range(len(self.completions))]

    def group_means(self) -> torch.Tensor:
        """R̄ᵢ: the mean total reward of each prompt's group, [P]."""
        return self.rewards.view(-1, self.group_size).mean(dim=1)


@dataclass
class TokenLogprobs:
    """A replay's per-token log-probs of the completions, flat over rows (row-major, masked tokens dropped)."""
    logprobs: torch.Tensor           # [N]
    targets: torch.Tensor            # [N] the completion tokens
    seq_lens: torch.Tensor           # [rows] tokens per row


class Services(Protocol):
    """What a recipe may use; the trainer implements it (visd_core/trainer.py, "services")."""
    cfg: Config
    d: Dist
    tok: QwenTokenizer
    model: nn.Module
    dtype: torch.dtype
    out: Any                         # the run folder (pathlib.Path)
    step: int                        # optimizer steps done, over both stages
    rl_steps: int

    def next_samples(self, n: int, *, need_target: bool = False) -> list[PromptSample]: ...
    def load_sample(self, sample: PromptSample, *, visual_prompt: str | None = None, clip=None) -> PromptSample: ...
    def rollout(self, samples: list[PromptSample], group_size: int) -> GroupRollouts: ...
    def score(self, batch: GroupRollouts, rl_step: int) -> None: ...
    def replay_logprobs(self, model: nn.Module, rows: Sequence[tuple[list[int], list[int], PromptSample]],
                        temperature: float) -> TokenLogprobs: ...
    def frozen_copy(self, param_dtype: torch.dtype | None = None) -> nn.Module: ...
    def backward(self, loss: torch.Tensor, *, inject: bool = True) -> float: ...
    def optimizer_step(self, loss_is_finite: bool) -> dict[str, float]: ...
    def reward_metrics(self, batch: GroupRollouts) -> dict[str, float]: ...


class RLAlgorithm:
    """A recipe: `step` runs one RL step and returns its metrics (already reduced over ranks)."""
    name = "base"

    def __init__(self, svc: Services):
        self.svc = svc
        self.cfg = svc.cfg

    def step(self, rl_step: int) -> dict[str, float]:
        raise NotImplementedError

    # Frozen models a checkpoint must carry to resume exactly: {"teacher": m} and/or {"reference": m}.
    def checkpoint_models(self) -> dict[str, nn.Module]:
        return {}

    def prepare_resume(self, meta: dict) -> None:
        """Build the frozen models the checkpoint `meta` says it holds, so they can be loaded into."""

    def close(self) -> None:
        """Release what the recipe opened (a judge's connections, a selector)."""
