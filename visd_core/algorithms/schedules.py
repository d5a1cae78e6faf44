"""Training-progress schedules: VISD's mixing coefficient λ and the learning rate."""
from __future__ import annotations

import math


def visd_lambda(step: int, lambda0: float, anneal_steps: int) -> float:
    """λ_t = λ₀·(S − (t − 1))/S for 1 ≤ t ≤ S, then 0 (visd §3.4 eq. 7 curriculum, §C.2: S = 600).

    `step` is 1-based (the t-th optimization step). Once λ is 0, VISD is plain GRPO and neither
    the judge nor the teacher runs.
    """
    if step < 1:
        raise ValueError(f"step is 1-based, got {step}")
    if anneal_steps <= 0 or step > anneal_steps:
        return 0.0
    return lambda0 * (anneal_steps - (step - 1)) / anneal_steps


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at 1-based `step`: linear warmup, then constant or cosine to 0."""
    if warmup_steps > 0 and step <= warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        done = min(1.0, (step - warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * done))
    raise ValueError(f"unknown lr schedule {schedule!r}")


def stage_lr(optim, stage: str, stage_step: int, stage_steps: int) -> float:
    """The learning rate at 1-based `stage_step` of `stage` ("sft" | "rl") under an `[optim]` config:
    the RL stage takes rl_lr / rl_warmup_steps / rl_schedule where they are set."""
    base, warmup, schedule = optim.lr, optim.warmup_steps, optim.schedule
    if stage == "rl":
        base = optim.rl_lr if optim.rl_lr > 0 else base
        warmup = optim.rl_warmup_steps if optim.rl_warmup_steps >= 0 else warmup
        schedule = optim.rl_schedule or schedule
    return base * lr_factor(stage_step, stage_steps, warmup, schedule)
