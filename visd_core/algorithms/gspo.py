"""Grounded GSPO with a k3 KL to a frozen reference policy: VisionCoach's optimizer (visioncoach §3.4,
App. B: G = 4 rollouts, β = 0.04), without its visual prompts and self-distillation.

    L = L_GSPO + β · Σ_t w_t · k3_t        (kernels.gspo_loss, kernels.k3_kl; w_t of algorithm.loss_agg)

L_GSPO (Zheng et al. 2025): s_i = exp(mean_t log π/π_old) per sequence, clipped to [1 − ε_l, 1 + ε_h]
(algorithm.gspo_clip_low/high), times the group advantage Â_i (visd eq. 14). The reference is the
policy at the start of RL (the SFT model), sharded like the student and replayed through the same
chunked log-prob path (no [N, V] logits with kernels.fused_linear); with β = 0 it is never made.
"""
from __future__ import annotations

import math
import time

import torch

import kernels
from visd_core.algorithms.advantages import group_advantages
from visd_core.algorithms.base import GroupRollouts, RLAlgorithm
from visd_core.parallel import all_reduce_mean


class GSPO(RLAlgorithm):
    name = "gspo"

    def __init__(self, svc):
        super().__init__(svc)
        self.reference = None

    def _make_reference(self) -> None:
        if self.cfg.algorithm.kl_beta > 0 and self.reference is None:
            self.reference = self.svc.frozen_copy()

    def checkpoint_models(self):
        return {"reference": self.reference} if self.reference is not None else {}

    def prepare_resume(self, meta: dict) -> None:
        if meta.get("reference"):
            self._make_reference()

    def policy_loss(self, batch: GroupRollouts, adv: torch.Tensor, timer: dict) -> tuple[torch.Tensor, dict]:
        """GSPO + β·KL on the batch's rollouts, from one student replay (and one reference replay when β > 0)."""
        svc, cfg = self.svc, self.cfg
        T, beta = cfg.rollout.temperature, cfg.algorithm.kl_beta
        rows = [(o.prompt_ids, c, o) for o, c in zip(batch.owner, batch.completions)]
        ref = None
        if beta > 0:
            t = time.perf_counter()
            with torch.no_grad():
                ref = svc.replay_logprobs(self.reference, rows, T).logprobs
            timer["reference"] = time.perf_counter() - t
        t = time.perf_counter()
        cur = svc.replay_logprobs(svc.model, rows, T)
        roll = batch.roll
        assert torch.equal(cur.targets, roll.completion_ids[roll.completion_mask].to(cur.targets.device))
        old = roll.logprobs[roll.completion_mask].to(cur.logprobs.device)
        a = cfg.algorithm
        loss = kernels.gspo_loss(cur.logprobs, old, adv.to(old.device), cur.seq_lens,
                                 clip_low=a.gspo_clip_low, clip_high=a.gspo_clip_high)
        stats = {"loss/gspo": loss.item()}
        with torch.no_grad():   # the sequence ratios and how many were clipped (GSPO's trust region at work)
            seq_id = torch.repeat_interleave(torch.arange(len(cur.seq_lens), device=old.device), cur.seq_lens)
            mean_lr = torch.zeros(len(cur.seq_lens), device=old.device).index_add(
                0, seq_id, (cur.logprobs - old).float()) / cur.seq_lens.clamp_min(1)
            s = mean_lr.exp()
            stats["gspo/ratio_mean"] = s.mean().item()
            stats["gspo/clip_frac"] = ((s < 1 - a.gspo_clip_low) | (s > 1 + a.gspo_clip_high)).float().mean().item()
        if ref is not None:
            k3 = kernels.k3_kl(cur.logprobs, ref)
            kl = kernels.aggregate(k3, cur.seq_lens, aggregation=a.loss_agg)
            loss = loss + beta * kl
            stats["kl/mean"] = kl.item()
        timer["update"] = timer.get("update", 0.0) + time.perf_counter() - t
        return loss, stats

    def rollout_and_score(self, rl_step: int, timer: dict) -> tuple[GroupRollouts, torch.Tensor]:
        """G rollouts of the step's prompts, their rewards and group advantages (visd eq. 14)."""
        svc, cfg = self.svc, self.cfg
        self._make_reference()
        t = time.perf_counter()
        batch = svc.rollout(svc.next_samples(cfg.training.rl_batch_size or cfg.training.batch_size),
                            cfg.rollout.group_size)
        timer["rollout"] = time.perf_counter() - t
        t = time.perf_counter()
        svc.score(batch, rl_step)
        adv = group_advantages(batch.rewards, cfg.rollout.group_size, cfg.algorithm.adv_eps)
        timer["reward"] = time.perf_counter() - t
        return batch, adv

    def step(self, rl_step: int) -> dict[str, float]:
        svc = self.svc
        timer: dict[str, float] = {}
        batch, adv = self.rollout_and_score(rl_step, timer)
        loss, stats = self.policy_loss(batch, adv, timer)
        t = time.perf_counter()
        loss_value = svc.backward(loss)
        m = svc.optimizer_step(math.isfinite(loss_value))
        timer["update"] += time.perf_counter() - t
        return self._metrics(m, batch, adv, loss_value, stats, timer)

    def _metrics(self, m: dict, batch: GroupRollouts, adv: torch.Tensor, loss_value: float, stats: dict,
                 timer: dict) -> dict[str, float]:
        m.update(self.svc.reward_metrics(batch))
        summary = dict(stats)
        summary.update({"adv/mean": adv.mean().item(), "adv/abs_mean": adv.abs().mean().item(),
                        "adv/zero_frac": float((adv == 0).float().mean()), "loss/policy": loss_value})
        summary.update({f"time/{k}": v for k, v in timer.items()})
        m.update(all_reduce_mean(summary, self.svc.d))
        return m
