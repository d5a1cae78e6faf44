"""VisionCoach (visioncoach Algorithm 1, eq. 1–2): visual-prompt re-rollouts on hard samples and
self-distillation of the improved trajectories, on grounded GSPO with a KL to the SFT policy.

For each prompt i of the step (Algorithm 1, line by line):
  3-5   G rollouts y⁽ᵍ⁾ ~ π(·|xᵢ, qᵢ) and their rewards R⁽ᵍ⁾ (visioncoach eq. 4, the verifier)
  6     R̄ᵢ = mean_g R⁽ᵍ⁾; hard when R̄ᵢ < k (visioncoach.hard_threshold; "batch_mean": this step's mean)
  8     vᵢ = the selector's prompt kind (visioncoach.selector: the VP-Selector, a fixed kind, or gating)
  9     (x′ᵢ, q′ᵢ) = (VP(xᵢ; vᵢ) on the key frames, qᵢ ⊕ hint(vᵢ))  (visd_core/visual_prompts)
  10-12 G more rollouts y′⁽ᵍ⁾ ~ π(·|x′ᵢ, q′ᵢ) and their rewards R′⁽ᵍ⁾
  13    Cᵢ = {g : R′⁽ᵍ⁾ > R̄ᵢ}, where App. B scores both sides by the mean of r_spa, r_tmp and r_acc
  15    Sᵢ = the top N of Cᵢ by r_acc (visioncoach.sd_top_n = 2)
  16    L_SD,i = −1/|Sᵢ| Σ_j 1/|y′ⱼ| Σ_t log π(y′ⱼ,t | y′ⱼ,<t, x′ᵢ, q′ᵢ)                         (eq. 1)
  17    L = L_GSPO + α·𝕀ᵢ·L_SD,i                                                              (eq. 2)

The GSPO (+ β·KL) loss is taken on the original rollouts only; the prompted rollouts serve only as
distillation targets. Over a batch of P prompts, L = L_GSPO(batch) + α/P · Σᵢ 𝕀ᵢ L_SD,i (eq. 2 per
sample, averaged like L_GSPO). eq. 1 conditions on (x′, q′); visioncoach.sd_condition = "raw"
distills the same trajectories onto (x, q) instead. The SD log-probs are the policy's own (T = 1, as
the SFT loss), not the rollout temperature's.

Component names (visd_core/rewards/reward.py): r_acc is the answer reward of the task ("ans" for
multiple choice and free-form, the answer-interval IoU "ans_tmp" for temporal grounding, the box IoU
"ans_spa" for spatial grounding — visioncoach §3.4's task-specific accuracy), r_tmp = "thk_tmp" and
r_spa = "thk_spa" (the grounded evidence in the reasoning). A component a task lacks is left out of
the mean.
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter

import torch
import torch.distributed as dist

from visd_core.algorithms.base import GroupRollouts
from visd_core.algorithms.gspo import GSPO
from visd_core.config import VISUAL_PROMPT_KINDS
from visd_core.data.model_inputs import SampleError
from visd_core.parallel import all_reduce_max, all_reduce_sum

log = logging.getLogger("visd")
SD_TEMPERATURE = 1.0


# ------------------------------------------------------------------------------ pure pieces (tested alone)
def r_acc(components: dict) -> float | None:
    """visioncoach's task-specific answer accuracy from our components (module docstring)."""
    for k in ("ans", "ans_tmp", "ans_spa"):
        if components.get(k) is not None:
            return components[k]
    return None


def candidate_score(components: dict) -> float:
    """The mean of r_spa, r_tmp and r_acc that apply (App. B); 0 when none does."""
    vals = [v for v in (r_acc(components), components.get("thk_tmp"), components.get("thk_spa")) if v is not None]
    return sum(vals) / len(vals) if vals else 0.0


def hard_samples(group_means: list[float], threshold: float) -> list[int]:
    """Algorithm 1 line 6: indices i with R̄ᵢ < k."""
    return [i for i, r in enumerate(group_means) if r < threshold]


def distill_selection(original: list[dict], prompted: list[dict], top_n: int) -> tuple[list[int], list[int]]:
    """(Cᵢ, Sᵢ) as indices into `prompted` (Algorithm 1 lines 13 and 15) from the component dicts of
    the original and the prompted rollouts of one sample. Cᵢ: prompted rollouts whose candidate score
    beats the original rollouts' mean candidate score, strictly. Sᵢ: the top N of Cᵢ by r_acc; ties
    by the higher candidate score, then by rollout order (deterministic)."""
    bar = sum(candidate_score(c) for c in original) / len(original)
    cand = [g for g, c in enumerate(prompted) if candidate_score(c) > bar]
    ranked = sorted(cand, key=lambda g: (-(r_acc(prompted[g]) or 0.0), -candidate_score(prompted[g]), g))
    return cand, ranked[:top_n]


def gating_kind(tmp: float | None, spa: float | None, batch_tmp: float | None, batch_spa: float | None) -> str:
    """Table 13's gating (App. D.3): frame numbers when the sample's temporal reward is below the batch
    mean, darken when its spatial one is; when both are, the larger shortfall decides; when neither
    (or the task has neither reward), "raw": a second look with the same input."""
    short_tmp = (batch_tmp - tmp) if tmp is not None and batch_tmp is not None else 0.0
    short_spa = (batch_spa - spa) if spa is not None and batch_spa is not None else 0.0
    if short_tmp <= 0 and short_spa <= 0:
        return "raw"
    return "numpro" if short_tmp >= short_spa else "darken"


def weighted_sequence_nll(logprobs: torch.Tensor, seq_lens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_j w_j · (−1/|y_j| Σ_t log π(y_j,t)): eq. 1's per-sequence token-mean NLL, each sequence
    weighted (α-free: w_j = 1/(P·|Sᵢ|) makes it the batch mean of eq. 2's per-sample L_SD,i)."""
    seq_id = torch.repeat_interleave(torch.arange(len(seq_lens), device=logprobs.device), seq_lens.to(logprobs.device))
    total = torch.zeros(len(seq_lens), dtype=logprobs.dtype, device=logprobs.device).index_add(0, seq_id, logprobs)
    nll = -total / seq_lens.to(logprobs.device).clamp_min(1)
    return (weights.to(nll) * nll).sum()


def _mean_component(results, key: str) -> float | None:
    vals = [r.components[key] for r in results if r.components[key] is not None]
    return sum(vals) / len(vals) if vals else None


# ------------------------------------------------------------------------------ the recipe
class VisionCoach(GSPO):
    name = "visioncoach"

    def __init__(self, svc):
        super().__init__(svc)
        vc = self.cfg.visioncoach
        self.clip = None
        if vc.clip_path:     # api_prompt's relevance model, loaded once (visd_core/visual_prompts)
            from visd_core.visual_prompts import ClipRelevance
            self.clip = ClipRelevance.from_pretrained(vc.clip_path)
        self.selector = None
        if vc.selector == "model":
            from visd_core.selector import VPSelector
            self.selector = VPSelector.from_dir(vc.selector_path, device=svc.d.device, dtype=svc.dtype)
            if self.selector.meta.get("label_counts", {}).get("api_prompt") and self.clip is None:
                raise ValueError(f"the VP-Selector at {vc.selector_path} was trained to choose api_prompt, which "
                                 "needs visioncoach.clip_path (a local CLIP checkpoint directory)")

    def _threshold(self, batch: GroupRollouts) -> float:
        """k: the configured number, this step's mean reward, or a quantile of its R̄ᵢ (all ranks)."""
        k = self.cfg.visioncoach.hard_threshold
        if not isinstance(k, str):
            return float(k)
        if k == "batch_mean":
            tot = all_reduce_sum({"r": float(batch.rewards.sum()), "n": float(batch.rewards.numel())}, self.svc.d)
            return tot["r"] / max(tot["n"], 1.0)
        means = batch.group_means().tolist()
        if dist.is_initialized():
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, means)
            means = [m for p in parts for m in p]
        return float(torch.tensor(means, dtype=torch.float64).quantile(float(k.removeprefix("batch_quantile:"))))

    def _choose(self, batch: GroupRollouts, hard: list[int]) -> list[str]:
        """Algorithm 1 line 8: a prompt kind per hard sample (called on every rank: gating reduces)."""
        vc, G = self.cfg.visioncoach, batch.group_size
        groups = [batch.results[i * G:(i + 1) * G] for i in range(len(batch.samples))]
        if vc.selector.startswith("fixed:"):
            return [vc.selector.removeprefix("fixed:")] * len(hard)
        if vc.selector == "gating":
            sums = {}
            for key in ("thk_tmp", "thk_spa"):
                vals = [r.components[key] for r in batch.results if r.components[key] is not None]
                sums[f"{key}/sum"], sums[f"{key}/n"] = float(sum(vals)), float(len(vals))
            tot = all_reduce_sum(sums, self.svc.d)
            bt = tot["thk_tmp/sum"] / tot["thk_tmp/n"] if tot["thk_tmp/n"] else None
            bs = tot["thk_spa/sum"] / tot["thk_spa/n"] if tot["thk_spa/n"] else None
            return [gating_kind(_mean_component(groups[i], "thk_tmp"), _mean_component(groups[i], "thk_spa"), bt, bs)
                    for i in hard]
        kinds = self.selector.predict([batch.samples[i].record for i in hard]) if hard else []
        if self.clip is None and "api_prompt" in kinds:    # never a label it was trained on (checked at start)
            log.warning("VP-Selector chose api_prompt without a CLIP model (visioncoach.clip_path): using raw")
            kinds = ["raw" if k == "api_prompt" else k for k in kinds]
        return kinds

    def step(self, rl_step: int) -> dict[str, float]:
        svc, cfg, vc = self.svc, self.cfg, self.cfg.visioncoach
        G, d = cfg.rollout.group_size, self.svc.d
        timer: dict[str, float] = {}

        # lines 3-6: the initial rollouts, their rewards and the hard samples
        batch, adv = self.rollout_and_score(rl_step, timer)
        t = time.perf_counter()
        means = batch.group_means().tolist()
        hard = hard_samples(means, self._threshold(batch))
        timer["reward"] += time.perf_counter() - t

        # lines 8-12: the selector's prompt kind, the prompted input (x′, q′) and G more rollouts
        t = time.perf_counter()
        kinds = self._choose(batch, hard)
        prompted, kept, failed = [], [], 0
        for i, kind in zip(hard, kinds):
            try:
                prompted.append(svc.load_sample(batch.samples[i], visual_prompt=kind, clip=self.clip))
                kept.append((i, kind))
            except SampleError as e:    # e.g. the hinted prompt grew past data.max_prompt_len: no re-rollout
                failed += 1
                log.warning("rank %d: no visual-prompt re-rollout for %s: %s", d.rank, batch.samples[i].record.id, e)
        re = None
        # Every rank decodes when any does (the first forward all-gathers); a rank without a hard
        # sample rolls its first prompt as padding and drops the result.
        if all_reduce_max({"any": float(bool(prompted))}, d)["any"] > 0:
            re = svc.rollout(prompted or batch.samples[:1], G)
            if prompted:        # padding is never read: `kept` is empty on such a rank
                svc.score(re, rl_step)
        timer["rerollout"] = time.perf_counter() - t

        # lines 13-15: candidates Cᵢ and the distilled top-N Sᵢ
        sd_rows, sd_weights, n_cand, n_sd, gains = [], [], 0, 0, []
        for j, (i, kind) in enumerate(kept):
            orig = [r.components for r in batch.results[i * G:(i + 1) * G]]
            new = re.results[j * G:(j + 1) * G]
            cand, chosen = distill_selection(orig, [r.components for r in new], vc.sd_top_n)
            n_cand += len(cand)
            if means[i] > 0:        # §4.3's relative gain (R̄′ᵢ − R̄ᵢ)/R̄ᵢ, defined for R̄ᵢ > 0
                gains.append((sum(r.total for r in new) / G - means[i]) / means[i])
            if chosen:
                n_sd += 1
                src = prompted[j] if vc.sd_condition == "prompted" else batch.samples[i]
                for g in chosen:
                    sd_rows.append((src.prompt_ids, re.completions[j * G + g], src))
                    sd_weights.append(1.0 / (len(chosen) * len(batch.samples)))    # α/P · 1/|Sᵢ| (eq. 1-2)

        # the GSPO (+ KL) loss on the original rollouts
        loss, stats = self.policy_loss(batch, adv, timer)
        t = time.perf_counter()
        loss_value = svc.backward(loss)
        timer["update"] += time.perf_counter() - t

        # lines 16-17: α·𝕀ᵢ·L_SD,i, one replay for the batch; padding (weight 0) on ranks without rows
        t = time.perf_counter()
        sd_value = 0.0
        if vc.sd_weight > 0 and all_reduce_max({"any": float(bool(sd_rows))}, d)["any"] > 0:
            rows = sd_rows or [(batch.samples[0].prompt_ids, batch.completions[0], batch.samples[0])]
            w = torch.tensor(sd_weights or [0.0], dtype=torch.float32)
            lp = svc.replay_logprobs(svc.model, rows, SD_TEMPERATURE)
            sd = weighted_sequence_nll(lp.logprobs, lp.seq_lens, w)
            sd_value = sd.item() / max(sum(sd_weights), 1e-12) if sd_rows else 0.0   # the mean L_SD per distilled sample
            svc.backward(vc.sd_weight * sd, inject=False)
        timer["sd"] = time.perf_counter() - t
        t = time.perf_counter()
        m = svc.optimizer_step(math.isfinite(loss_value) and math.isfinite(sd_value))
        timer["update"] += time.perf_counter() - t

        counts = Counter(kind for _, kind in kept)
        vsum = {"vc/hard": float(len(hard)), "vc/prompts": float(len(batch.samples)), "vc/kept": float(len(kept)),
                "vc/sd_candidates": float(n_cand), "vc/sd_samples": float(n_sd), "vc/sd_rows": float(len(sd_rows)),
                "vc/gain_sum": float(sum(gains)), "vc/gain_n": float(len(gains)), "vc/skipped_prompt": float(failed),
                "vc/sd_loss_sum": sd_value * n_sd}
        vsum.update({f"vc/prompt/{k}": float(counts[k]) for k in VISUAL_PROMPT_KINDS})
        tot = all_reduce_sum(vsum, d)
        vm = {"vc/hard_frac": tot["vc/hard"] / tot["vc/prompts"],
              "vc/sd_candidates": tot["vc/sd_candidates"] / max(tot["vc/kept"], 1.0),   # mean |Cᵢ| per hard sample
              "vc/sd_samples": tot["vc/sd_samples"], "vc/sd_rows": tot["vc/sd_rows"],
              "vc/sd_loss": tot["vc/sd_loss_sum"] / max(tot["vc/sd_samples"], 1.0),
              "vc/skipped_prompt": tot["vc/skipped_prompt"]}
        if tot["vc/gain_n"] > 0:
            vm["vc/reward_gain"] = tot["vc/gain_sum"] / tot["vc/gain_n"]
        vm.update({f"vc/prompt/{k}": tot[f"vc/prompt/{k}"] for k in VISUAL_PROMPT_KINDS})
        m = self._metrics(m, batch, adv, loss_value, stats, timer)
        m.update(vm)
        return m
