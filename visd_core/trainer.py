"""The training loop: SFT cold start, then an RL recipe (visd_core/algorithms/) on shared services.

    torchrun --standalone --nproc_per_node=2 train.py --config configs/tiny_synthetic.toml

The loop: SFT steps (token-mean cross-entropy on the grounded targets), then RL steps, each one
`algo.step(rl_step)` of the recipe named by algorithm.name — grounded GRPO / VISD
(algorithms/visd.py), GSPO with a KL to the SFT policy (algorithms/gspo.py) or VisionCoach
(algorithms/visioncoach.py, Algorithm 1 of its paper). What every recipe needs is a service here:
the next prompts, G rollouts, the verifier's rewards, a replay of the policy's token log-probs, a
backward and an optimizer step (algorithms/base.py lists them).

Every rank runs the same number of forwards (FSDP2 collectives), so every per-rank choice that
could diverge (a skipped sample, an early stop, a non-finite loss) is agreed on by all-reduce.
Fault injection for tests: VISD_INJECT_NONFINITE="step:rank" makes that rank's loss NaN at that step;
VISD_INJECT_KILL="step:S:rank" SIGKILLs that rank as step S begins, "save:S:rank" while step S's
checkpoint is written but not committed (first attempt only: a torchrun restart runs clean).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

import kernels
from visd_core import checkpoint as ckpt
from visd_core.algorithms import GroupRollouts, TokenLogprobs, build_algorithm
from visd_core.algorithms.schedules import stage_lr
from visd_core.config import Config, save_config
from visd_core.data.model_inputs import PromptSample, SampleError, collate, load_prompt, teacher_prompt_ids
from visd_core.data.reader import JsonlReader
from visd_core.eval.validation import Validator
from visd_core.judge.base import JudgeRequest
from visd_core.judge.rule import rule_feedback
from visd_core.metrics import MetricsWriter, peak_memory_mb, plot_rewards
from visd_core.model import build_model, completion_hidden, completion_logits, compute_dtype, export_hf
from visd_core.parallel import (Dist, all_reduce_max, all_reduce_sum, clip_grad_norm_, destroy_distributed,
                                frozen_copy, gathered, init_distributed)
from visd_core.preflight import check_inputs
from visd_core.report import write_report
from visd_core.report.plots import TIME_PARTS
from visd_core.rewards.reward import COMPONENTS, score_group
from visd_core.rewards.temporal import sigma_progress
from visd_core.rollout import generate
from visd_core.teacher.corrupt import corrupt_reasoning
from visd_core.vocab_subset import check_run_subset, model_tokenizer

log = logging.getLogger("visd")
MAX_SAMPLE_TRIES = 8            # unreadable records skipped in a row before a step gives up
# Why a rank skipped a sample while training (`data/skipped_<reason>`, summed over ranks); the
# reader's load-time reasons (bad_json, missing_video, invalid, ...) are reported beside them.
SAMPLE_SKIP_REASONS = ("unreadable_video", "prompt_too_long", "no_sft_target")


class Trainer:
    def __init__(self, cfg: Config):
        if cfg.algorithm.kl_beta > 0 and cfg.algorithm.name not in ("gspo", "visioncoach"):
            raise ValueError(f"algorithm.kl_beta > 0 is the KL of the gspo / visioncoach recipes; "
                             f"{cfg.algorithm.name} has no reference policy (set it to 0)")
        if cfg.algorithm.updates_per_batch != 1:
            raise ValueError("algorithm.updates_per_batch != 1 is not implemented (the paper recipe uses 1: ρ = 1)")
        if cfg.training.grad_accum != 1 and cfg.training.stage != "sft":
            raise ValueError("training.grad_accum != 1 is implemented for the SFT stage only")
        check_inputs(cfg)
        if cfg.kernels.backend != "auto":      # kernels/ reads the choice at every call
            os.environ["VISD_KERNEL_BACKEND"] = cfg.kernels.backend
        self.cfg = cfg
        # Adam's second moments of rarely seen vocabulary rows decay into denormals, and denormal
        # arithmetic is ~100x slower on x86: AdamW's sqrt took 0.3 s of a 2.2 s tiny SFT step.
        torch.set_flush_denormal(True)
        self.d: Dist = init_distributed(cfg.parallel.backend)
        self.out = cfg.dump_folder
        random.seed(cfg.job.seed + self.d.rank)
        np.random.seed(cfg.job.seed + self.d.rank)
        torch.manual_seed(cfg.job.seed)
        self.reader = JsonlReader(cfg.data.train_path, video_root=cfg.data.video_root or None, rank=self.d.rank,
                                  world_size=self.d.world_size, seed=cfg.job.seed, shuffle=cfg.data.shuffle)
        self.tok = model_tokenizer(cfg.model, self.reader.records)     # a vocabulary subset's rows, or Qwen's ids
        self.dtype = compute_dtype(cfg.model.dtype, self.d.device)
        self.model = build_model(cfg.model, self.d, seed=cfg.job.seed, tok=self.tok)
        self.model.train()
        self.opt = self._new_optimizer()
        t = cfg.training
        sft = t.sft_steps if t.stage in ("sft", "sft_then_rl") else 0
        rl = t.rl_steps if t.stage in ("rl", "sft_then_rl") else 0
        self.sft_steps, self.rl_steps, self.total_steps = sft, rl, sft + rl
        self.step = 0                   # optimizer steps done, over both stages
        self.gen = torch.Generator().manual_seed(cfg.job.seed * 1_000_003 + self.d.rank)   # sampling
        self.rng = random.Random(cfg.job.seed * 7919 + self.d.rank)                         # SFT teacher views
        self.skipped: Counter[str] = Counter()
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self.ckpt_root = self.out / "checkpoints"
        resume = ckpt.resolve_resume(self.ckpt_root, ckpt.effective_resume(cfg.checkpoint.resume), self.d)
        self.writer = MetricsWriter(self.out, enabled=self.d.is_main, resume=resume is not None, opts=cfg.metrics)
        check_run_subset(self.tok, self.out, resume is not None, self.d.is_main)   # the rows a checkpoint indexes
        if self.d.is_main:
            save_config(cfg, self.out)
        self.algo = build_algorithm(cfg, self)     # the RL recipe; its frozen models are made when first needed
        self.validator = Validator(cfg, self.tok, self.d) if cfg.eval.every > 0 else None
        if resume is not None:
            self._resume(resume)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        return torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                                 weight_decay=o.weight_decay, fused=True)   # 4x foreach's step on CPU

    # ------------------------------------------------------------------------------ state
    def _extra_state(self) -> dict:
        return {"step": self.step, "reader": self.reader.state_dict(), "gen": self.gen.get_state(),
                "rng": self.rng.getstate(), "skipped": dict(self.skipped),
                "nonfinite_in_a_row": self.nonfinite_in_a_row, "nonfinite_total": self.nonfinite_total}

    def _resume(self, path: Path) -> None:
        meta = json.loads((path / ckpt.MARKER).read_text())
        self.algo.prepare_resume(meta)
        frozen = self.algo.checkpoint_models()
        step, extra = ckpt.load_checkpoint(path, self.d, model=self.model, optimizer=self.opt,
                                           teacher=frozen.get("teacher"), reference=frozen.get("reference"))
        self.step = step
        if "all_ranks" in extra:        # written on another world size: convert the per-rank state
            old = extra["all_ranks"]
            self.reader.load_state_dicts([e["reader"] for e in old])
            if self.d.rank < len(old):  # a surviving rank keeps its sampling streams
                self.gen.set_state(old[self.d.rank]["gen"])
                self.rng.setstate(old[self.d.rank]["rng"])
            else:                       # a new rank: fresh streams, distinct from every old one
                self.gen.manual_seed((self.cfg.job.seed * 1_000_003 + self.d.rank) ^ (step << 20))
                self.rng.seed(self.cfg.job.seed * 7919 + self.d.rank + (step << 20))
            self.skipped = sum((Counter(e["skipped"]) for e in old), Counter()) if self.d.is_main else Counter()
        else:
            self.reader.load_state_dict(extra["reader"])
            self.gen.set_state(extra["gen"])
            self.rng.setstate(extra["rng"])
            self.skipped = Counter(extra["skipped"])
        self.nonfinite_in_a_row, self.nonfinite_total = extra["nonfinite_in_a_row"], extra["nonfinite_total"]
        self.writer.truncate_after(step)
        if self.d.is_main:
            log.info("resumed from %s at step %d", path, step)

    def save(self) -> None:
        frozen = self.algo.checkpoint_models()
        ckpt.save_checkpoint(self.ckpt_root, self.step, self.d, model=self.model, optimizer=self.opt,
                             teacher=frozen.get("teacher"), reference=frozen.get("reference"), extra=self._extra_state(), keep=self.cfg.checkpoint.keep,
                             before_commit=lambda: self._maybe_kill("save", self.step))

    def _maybe_kill(self, point: str, step: int) -> None:
        """VISD_INJECT_KILL="point:step:rank" (module docstring): die like a lost node, on the first attempt."""
        if os.environ.get("VISD_INJECT_KILL") == f"{point}:{step}:{self.d.rank}" and ckpt.restart_count() == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    # ------------------------------------------------------------------------------ data
    def next_samples(self, n: int, *, need_target: bool = False) -> list[PromptSample]:
        """n prompt samples for this rank; unreadable records are skipped and counted (never fatal)."""
        out, tries = [], 0
        while len(out) < n:
            record = next(iter(self.reader))
            if need_target and not record.reasoning_process:
                self.skipped["no_sft_target"] += 1
                continue
            try:
                out.append(load_prompt(record, self.cfg.data, self.tok))
                tries = 0
            except SampleError as e:
                self.skipped[e.reason] += 1
                tries += 1
                if self.d.is_main or tries == 1:
                    log.warning("rank %d skipped a sample: %s", self.d.rank, e)
                if tries >= MAX_SAMPLE_TRIES:
                    raise RuntimeError(f"{tries} samples in a row could not be loaded; last: {e}") from e
        return out

    def load_sample(self, sample: PromptSample, *, visual_prompt: str | None = None, clip=None) -> PromptSample:
        """`sample`'s record again, its key frames visually prompted and its question hinted (visioncoach
        Alg. 1 line 9). Raises SampleError (the caller decides: skip and count)."""
        return load_prompt(sample.record, self.cfg.data, self.tok, visual_prompt=visual_prompt, clip=clip)

    def _skip_metrics(self) -> dict[str, float]:
        """data/skipped_<reason>: samples skipped while training (summed over ranks) and records skipped
        at load (every rank reads the whole file, so rank 0's count); data/skipped: their total."""
        m = all_reduce_sum({f"data/skipped_{r}": float(self.skipped[r]) for r in SAMPLE_SKIP_REASONS}, self.d)
        m.update({f"data/skipped_{r}": float(n) for r, n in self.reader.skipped.items()})
        m["data/skipped"] = sum(m.values())
        return m

    # ------------------------------------------------------------------------------ shared update
    def _set_lr(self, stage: str, stage_step: int, stage_steps: int) -> float:
        lr = stage_lr(self.cfg.optim, stage, stage_step, stage_steps)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def optimizer_step(self, loss_is_finite: bool) -> dict[str, float]:
        """Clip, check, step. A non-finite loss or gradient on any rank skips the update on every rank."""
        inject = os.environ.get("VISD_INJECT_NONFINITE", "")
        bad_local = not loss_is_finite
        norm = clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_grad_norm)
        bad = all_reduce_max({"bad": float(bad_local)}, self.d)["bad"] > 0 or not math.isfinite(norm.item())
        if inject:
            assert bad or f"{self.step + 1}:{self.d.rank}" != inject, "injected non-finite loss was not seen"
        if bad:
            self.opt.zero_grad(set_to_none=True)
            self.nonfinite_in_a_row += 1
            self.nonfinite_total += 1
            if self.d.is_main:
                log.warning("step %d: non-finite loss or gradient, update skipped on every rank (%d in a row)",
                            self.step + 1, self.nonfinite_in_a_row)
            if self.nonfinite_in_a_row >= self.cfg.optim.max_nonfinite_in_a_row:
                raise RuntimeError(f"{self.nonfinite_in_a_row} non-finite updates in a row "
                                   f"(optim.max_nonfinite_in_a_row = {self.cfg.optim.max_nonfinite_in_a_row}); aborting")
        else:
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.nonfinite_in_a_row = 0
        return {"optim/grad_norm": norm.item() if math.isfinite(norm.item()) else float("nan"),
                "optim/skipped_nonfinite": float(bad), "optim/nonfinite_total": float(self.nonfinite_total)}

    def _maybe_inject(self, loss: torch.Tensor) -> torch.Tensor:
        if os.environ.get("VISD_INJECT_NONFINITE", "") == f"{self.step + 1}:{self.d.rank}":
            return loss * float("nan")
        return loss

    # ------------------------------------------------------------------------------ SFT
    def _sft_target(self, sample: PromptSample) -> tuple[list[int], list[int]]:
        """(prompt ids, target ids): the student's prompt, or — a fraction of the time — the teacher's
        view with rule-judge feedback on a corrupted or a clean copy of the target (module docstring of
        teacher/corrupt.py), always followed by the correct grounded reasoning."""
        target_text = sample.record.reasoning_process
        target = self.tok.encode(target_text) + [self.tok.im_end]
        if self.rng.random() >= self.cfg.training.sft_teacher_view_frac:
            return sample.prompt_ids, target
        feedback = None
        if self.cfg.visd.feedback:
            shown = target_text
            if self.rng.random() < 0.5:
                shown, _ = corrupt_reasoning(target_text, self.rng, sample.frame_size)
            diag = score_group(sample.record, [shown], sample.frame_size, 1.0, self.cfg.reward)[0].diagnosis
            feedback = rule_feedback(JudgeRequest.from_record(sample.record, shown, diag, sample.frame_size))
        return teacher_prompt_ids(sample, self.tok, feedback), target

    def sft_step(self, stage_step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        lr = self._set_lr("sft", stage_step, self.sft_steps)
        accum = self.cfg.training.grad_accum
        loss_sum, ntok, finite = 0.0, 0, True
        for _ in range(accum):
            samples = self.next_samples(self.cfg.training.batch_size, need_target=True)
            rows = [(*self._sft_target(s), s) for s in samples]
            if self.cfg.kernels.fused_linear:   # lm_head fused in by token chunks: no [N, V] logits
                cl = completion_hidden(self.model, collate(rows, self.tok.pad_id),
                                       lambda h: kernels.linear_token_logprobs(h.hidden, h.weight, h.targets))
                logp = cl.out
            else:
                cl = completion_logits(self.model, collate(rows, self.tok.pad_id))
                logp = kernels.token_logprobs(cl.logits, cl.targets)
            loss = self._maybe_inject(-logp.mean()) / accum       # token-mean cross-entropy
            finite &= bool(torch.isfinite(loss))
            loss.backward()
            loss_sum += loss.item()
            ntok += cl.targets.numel()
        m = self.optimizer_step(finite)
        dt = time.perf_counter() - t0
        m.update({"sft/loss": loss_sum, "optim/lr": lr, "perf/tokens_per_s": ntok / dt, "time/step": dt})
        return m

    # ------------------------------------------------------------------------------ RL services
    # What the recipes in visd_core/algorithms/ use (algorithms/base.py `Services`).
    def _all_done(self, local_done: bool) -> bool:
        return all_reduce_max({"busy": float(not local_done)}, self.d)["busy"] == 0

    def rollout(self, samples: list[PromptSample], group_size: int, rollout_cfg=None) -> GroupRollouts:
        """G sampled completions of each prompt (one prefill per prompt, ranks in lockstep), with
        cfg.rollout or `rollout_cfg`; temperature 0 is greedy and draws nothing from the sampling RNG."""
        rc = rollout_cfg or self.cfg.rollout
        prompts = collate([(s.prompt_ids, [], s) for s in samples], self.tok.pad_id)
        self.model.eval()
        with gathered(self.model):
            roll = generate(self.model, prompts, rc, group_size=group_size, stop_ids=self.tok.eos_ids, pad_id=self.tok.pad_id,
                            generator=self.gen if rc.temperature > 0 else None, sync=self._all_done)
        self.model.train()
        completions = roll.rows()
        texts = [self.tok.decode([t for t in row if t not in self.tok.eos_ids]) for row in completions]
        return GroupRollouts(samples=samples, roll=roll, completions=completions, texts=texts, group_size=group_size)

    def score(self, batch: GroupRollouts, rl_step: int) -> None:
        """The verifier's rewards of every rollout (visd eq. 10 / visioncoach eq. 4), σ on the RL clock."""
        G, cfg = batch.group_size, self.cfg
        progress = sigma_progress(rl_step, cfg.reward, self.rl_steps)
        results = []
        for p, s in enumerate(batch.samples):
            results += score_group(s.record, batch.texts[p * G:(p + 1) * G], s.frame_size, progress, cfg.reward,
                                   truncated=batch.roll.truncated[p * G:(p + 1) * G].tolist())
        batch.results = results
        batch.rewards = torch.tensor([r.total for r in results])

    def replay_logprobs(self, model, rows, temperature: float) -> TokenLogprobs:
        """log π(y_t) of the completions in `rows` [(prompt ids, completion ids, sample)], from hidden
        states through the chunked fused-linear op (no [N, V] logits) or from the logits; differentiable
        unless called under torch.no_grad() (the frozen reference)."""
        batch = collate(rows, self.tok.pad_id)
        if self.cfg.kernels.fused_linear:
            cl = completion_hidden(model, batch, lambda h: kernels.linear_token_logprobs(
                h.hidden, h.weight, h.targets, temperature))
            return TokenLogprobs(cl.out, cl.targets, cl.seq_lens)
        cl = completion_logits(model, batch)
        return TokenLogprobs(kernels.token_logprobs(cl.logits, cl.targets, temperature), cl.targets, cl.seq_lens)

    def frozen_copy(self, param_dtype: torch.dtype | None = None):
        """A frozen copy of the policy sharded like it (the EMA teacher, the KL reference)."""
        return frozen_copy(self.model, self.d, param_dtype=param_dtype or self.dtype)

    def backward(self, loss: torch.Tensor, *, inject: bool = True) -> float:
        """loss.backward(); returns the loss's value (NaN when a test injects a non-finite loss)."""
        if inject:
            loss = self._maybe_inject(loss)
        loss.backward()
        return loss.item()

    def reward_metrics(self, batch: GroupRollouts) -> dict[str, float]:
        """Per-rollout reward, answer and length metrics of a batch, summed over ranks then divided by counts."""
        results, roll = batch.results, batch.roll
        sums = {"reward/total": float(batch.rewards.sum()), "n/rollouts": float(len(results)),
                "n/tokens": float(roll.lengths.sum()),
                "answer/acc": float(sum(bool(r.diagnosis.answer_correct) for r in results)),
                "answer/has_answer": float(sum(r.diagnosis.has_answer for r in results)),
                "rollout/truncated": float(roll.truncated.sum()), "rollout/length": float(roll.lengths.sum())}
        for k in COMPONENTS:
            vals = [r.components[k] for r in results if r.components[k] is not None]
            sums[f"reward/{k}"], sums[f"n/{k}"] = float(sum(vals)), float(len(vals))
        tot = all_reduce_sum(sums, self.d)
        n = tot["n/rollouts"]
        m = {"reward/total": tot["reward/total"] / n, "answer/acc": tot["answer/acc"] / n,
             "answer/has_answer": tot["answer/has_answer"] / n, "rollout/truncated_frac": tot["rollout/truncated"] / n,
             "rollout/mean_length": tot["rollout/length"] / n, "n/tokens": tot["n/tokens"]}
        for k in COMPONENTS:
            if tot[f"n/{k}"] > 0:
                m[f"reward/{k}"] = tot[f"reward/{k}"] / tot[f"n/{k}"]
        return m

    def rl_step(self, rl_step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        lr = self._set_lr("rl", rl_step, self.rl_steps)
        m = self.algo.step(rl_step)
        dt = time.perf_counter() - t0
        m.update({"optim/lr": lr, "time/step": dt, "perf/tokens_per_s": m.pop("n/tokens") / dt})
        return m

    # ------------------------------------------------------------------------------ validation
    def _greedy(self, samples: list[PromptSample]) -> list[tuple[str, bool]]:
        """Greedy answers (text, hit the token limit) of the prompts, ranks in lockstep; no RNG drawn."""
        rc = dataclasses.replace(self.cfg.rollout, temperature=0.0,
                                 max_new_tokens=self.cfg.eval.max_new_tokens or self.cfg.rollout.max_new_tokens)
        batch = self.rollout(samples, 1, rc)
        return list(zip(batch.texts, batch.roll.truncated.tolist()))

    def _validate_now(self, stage: str) -> bool:
        """Every eval.every steps, after the last SFT step (= the start of RL) and after the last step."""
        if self.validator is None:
            return False
        e = self.cfg.eval.every
        return (self.step % e == 0 or self.step == self.total_steps
                or (stage == "sft" and self.step == self.sft_steps and self.rl_steps > 0))

    # ------------------------------------------------------------------------------ loop
    def train(self) -> None:
        cfg = self.cfg
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.d.is_main, desc="train",
                   dynamic_ncols=True)
        if self.validator is not None and self.step == 0 and self.sft_steps == 0 and self.rl_steps > 0:
            t = time.perf_counter()     # an RL-only run: the starting policy's validation, as row 0
            self.writer.write(0, "val", {**self.validator.run(self._greedy), "time/val": time.perf_counter() - t})
        while self.step < self.total_steps:
            stage = "sft" if self.step < self.sft_steps else "rl"
            stage_step = self.step + 1 - (0 if stage == "sft" else self.sft_steps)
            self._maybe_kill("step", self.step + 1)
            if stage == "rl" and stage_step == 1 and self.sft_steps > 0:
                # RL starts from the SFT weights with a fresh optimizer, as the papers' RL runs start
                # from an SFT checkpoint, so optim.rl_lr means the same in both. Carried over, SFT's
                # second moments (grad norms 7 -> 1.1 over the tiny default's SFT, against ~0.4 for
                # its policy gradient; β2 = 0.999 remembers them) would shrink RL's steps several-fold.
                self.opt = self._new_optimizer()
            m = self.sft_step(stage_step) if stage == "sft" else self.rl_step(stage_step)
            self.step += 1
            if self._validate_now(stage):
                t = time.perf_counter()
                m.update(self.validator.run(self._greedy))
                m["time/val"] = time.perf_counter() - t
            m["mem/peak_mb"] = all_reduce_max({"mem": peak_memory_mb(self.d.device)}, self.d)["mem"]
            m.update(self._skip_metrics())
            self.writer.write(self.step, stage, m)
            if self.d.is_main:
                shown = {"loss": m.get("sft/loss", m.get("loss/policy"))}
                if stage == "rl":
                    shown["reward"] = m["reward/total"]
                    if "visd/lambda" in m:
                        shown["lam"] = m["visd/lambda"]
                bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
                bar.update(1)
            if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0 and self.step < self.total_steps:
                self.save()
        bar.close()
        self.save()
        if cfg.checkpoint.export:
            export_hf(self.model, self.out / "export", self.d, dtype=self.dtype, tokenizer=self.tok,
                      min_pixels=cfg.data.min_pixels, max_pixels=cfg.data.max_pixels)
        if self.d.is_main:
            self._report()

    def _report(self) -> None:
        rows = self.writer.read()
        png = plot_rewards(rows, self.out / "reward_curve.png")
        rl = [r["reward/total"] for r in rows if r.get("stage") == "rl"]
        if rl:
            k = max(1, len(rl) // 10)
            print(f"mean total reward: first 10% of RL steps {sum(rl[:k]) / k:.3f}, "
                  f"last 10% {sum(rl[-k:]) / k:.3f} ({len(rl)} RL steps)")
        for stage in ("sft", "rl"):
            st = [r for r in rows if r.get("stage") == stage]
            if not st:
                continue
            mean = {key: sum(r.get(key, 0.0) for r in st) / len(st) for key in ("time/step", *TIME_PARTS)}
            split = ", ".join(f"{key[5:]} {v:.2f}" for key, v in mean.items() if key != "time/step" and v > 0)
            print(f"{stage.upper()} step: {mean['time/step']:.2f} s mean" + (f" ({split})" if split else "")
                  + f"; peak memory {max(r.get('mem/peak_mb', 0.0) for r in st):.0f} MB per rank")
        self._print_val_table(rows)
        if self.skipped:
            print(f"samples skipped: {dict(self.skipped)}")
        print(f"outputs in {self.out}: metrics.jsonl, config.toml, checkpoints/"
              + (", reward_curve.png" if png else "") + (", export/" if self.cfg.checkpoint.export else ""))
        self.writer.close()         # flush TensorBoard / wandb before the report and the exit
        print(f"run report: {write_report([self.out])}")

    def _print_val_table(self, rows: list[dict]) -> None:
        """The validation metrics of the SFT model (the start of RL) and of the final model, side by side."""
        val = {r["step"]: r for r in rows if "val/n" in r}
        if not val:
            return
        cols = []
        start = self.sft_steps if self.sft_steps in val else (0 if 0 in val else None)
        if start is not None and (self.rl_steps > 0 or start == self.total_steps):
            cols.append(("SFT" if self.sft_steps else "start", start))
        last = max(val)
        if last != start:
            cols.append(("RL" if self.rl_steps else "end", last))
        keys = [("val/answer_accuracy", "answer accuracy %"), ("val/format_rate", "format rate %"),
                ("val/temporal_mIoU", "temporal mIoU %"), ("val/temporal_R@0.5", "temporal R@0.5 %"),
                ("val/spatial_mIoU", "spatial mIoU %"), ("val/reward", "mean reward")]
        head = f"{'validation (' + str(int(val[last]['val/n'])) + ' records)':<28}" + "".join(
            f"{f'{name} (step {s})':>20}" for name, s in cols)
        print(head)
        for key, label in keys:
            if any(key in val[s] for _, s in cols):
                print(f"{label:<28}" + "".join(f"{val[s][key]:>20.2f}" if key in val[s] else f"{'-':>20}"
                                                for _, s in cols))

    def close(self, barrier: bool = True) -> None:
        """Release the judge, the metric sinks and the process group; `barrier=False` after a failure."""
        torch.set_flush_denormal(False)     # process-wide: later code in this process (tests) sees IEEE floats
        self.writer.close()
        self.algo.close()
        if barrier and dist.is_initialized():
            dist.barrier()
        destroy_distributed()
