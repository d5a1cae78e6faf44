"""RL recipes on one engine: GRPO / VISD (visd.py), GSPO (gspo.py), VisionCoach (visioncoach.py).

    algo = build_algorithm(cfg, trainer)     # the trainer provides the shared services (base.Services)
"""
from __future__ import annotations

from visd_core.algorithms.base import GroupRollouts, RLAlgorithm, Services, TokenLogprobs


def build_algorithm(cfg, svc) -> RLAlgorithm:
    """The recipe named by algorithm.name (imports are local: a recipe's extras load only when used)."""
    name = cfg.algorithm.name
    if name in ("grpo", "visd"):
        from visd_core.algorithms.visd import GRPO, VISD
        return (VISD if name == "visd" else GRPO)(svc)
    if name == "gspo":
        from visd_core.algorithms.gspo import GSPO
        return GSPO(svc)
    if name == "visioncoach":
        from visd_core.algorithms.visioncoach import VisionCoach
        return VisionCoach(svc)
    raise ValueError(f"algorithm.name = {name!r}: not one of grpo, visd, gspo, visioncoach")


__all__ = ["GroupRollouts", "RLAlgorithm", "Services", "TokenLogprobs", "build_algorithm"]
