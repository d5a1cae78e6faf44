"""Thinking-temporal rewards: do the timestamps cited in <think> point at the evidence?

- segment inclusion (visd eq. 11) when the sample has a verified interval;
- key-frame Gaussian proximity (visd eq. 12; visioncoach eq. 5–6) when it has key frames, with
  σ annealed by training progress so early training tolerates coarse times.
"""
from __future__ import annotations

import bisect
import math

from visd_core.config import Reward
from visd_core.rewards.iou import Interval


def training_progress(step: int, total_steps: int) -> float:
    """p = (step + 1) / total steps for a 0-based step (the public code's σ-schedule clock)."""
    if total_steps <= 0 or step < 0:
        raise ValueError(f"need step >= 0 and total_steps > 0, got step={step}, total_steps={total_steps}")
    return min(1.0, (step + 1) / total_steps)


def sigma_progress(rl_step: int, cfg: Reward, rl_steps: int) -> float:
    """p of σ at 1-based RL step `rl_step`. The paper anneals over its whole run (one epoch) but
    evaluates earlier, so the horizon is reward.sigma_steps, not the stage length, unless that is 0."""
    return training_progress(rl_step - 1, cfg.sigma_steps or rl_steps)


def sigma_at(progress: float, cfg: Reward) -> float:
    """σ = sigma_max·(1 − p) while p < sigma_switch, then sigma_min (4·(1 − p), then 1 at p = 0.75)."""
    if not (0.0 <= progress <= 1.0):             # also rejects NaN
        raise ValueError(f"training progress must be in [0, 1], got {progress!r}")
    return cfg.sigma_max * (1.0 - progress) if progress < cfg.sigma_switch else cfg.sigma_min


def nearest(sorted_times: list[float], t: float) -> int:
    """Index of the time closest to t (the earlier one on a tie); sorted_times must be non-empty."""
    i = bisect.bisect_left(sorted_times, t)
    if i == 0:
        return 0
    if i == len(sorted_times):
        return i - 1
    return i - 1 if t - sorted_times[i - 1] <= sorted_times[i] - t else i


def segment_inclusion(times: list[float], window: Interval) -> float:
    """visd eq. 11: the fraction of cited times inside the verified window [s*, e*]; 0 if none cited."""
    if not times:
        return 0.0
    s, e = window
    return sum(s <= t <= e for t in times) / len(times)


def keyframe_proximity(times: list[float], key_times: list[float], sigma: float,
                       windows: tuple[Interval, ...] = ()) -> float:
    """visd eq. 12: mean over cited times of exp(−Δt²/2σ²), Δt to the nearest key frame.
    With verified windows as well, a time inside one scores 1 (visioncoach eq. 6) and Δt runs to
    the nearest key frame or window edge. 0 if no time is cited or there is nothing to compare."""
    anchors = sorted(list(key_times) + [x for w in windows for x in w])
    if not times or not anchors:
        return 0.0
    total = 0.0
    for t in times:
        if any(s <= t <= e for s, e in windows):
            total += 1.0                                                # visioncoach eq. 6, first case
        else:
            dt = t - anchors[nearest(anchors, t)]
            total += math.exp(-dt * dt / (2.0 * sigma * sigma))         # visd eq. 12
    return total / len(times)
