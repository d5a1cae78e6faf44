"""Verifier rewards for grounded video reasoning (visd eq. 10–13; visioncoach eq. 4–8, 13–15).

The trainer calls `score_group` once per prompt; `sigma_progress` / `sigma_at` give the
annealed σ of the key-frame reward. Files, one job each: parse.py (completion → tags, claims,
answer), answer.py, format.py, temporal.py, spatial.py (the components), iou.py, rouge.py,
reward.py (the weighted total and the diagnosis), diagnosis.py (what the rule judge reads).
"""
from visd_core.rewards.diagnosis import Diagnosis
from visd_core.rewards.parse import Claim, Completion, parse_completion
from visd_core.rewards.reward import COMPONENTS, TASK_COMPONENTS, RewardResult, score_group
from visd_core.rewards.temporal import sigma_at, sigma_progress, training_progress

__all__ = ["COMPONENTS", "TASK_COMPONENTS", "Claim", "Completion", "Diagnosis", "RewardResult",
           "parse_completion", "score_group", "sigma_at", "sigma_progress",
           "training_progress"]
