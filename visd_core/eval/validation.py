"""Validation during training: greedy answers on the first `[eval] num_samples` records of
data.val_path, scored by the verifier and summed up like the evaluation runner's summary.json, as
`val/*` metrics of the step (issue 11; every `[eval] every` steps, at the start of RL and at the end).

    val = Validator(cfg, tok, d)
    m.update(val.run(model, generate_fn))      # every rank calls it: decoding is in lockstep

The records are split over ranks (record i goes to rank i mod world) and every rank decodes the
same number of batches, padding with a repeat of its first sample whose answers are dropped.
Greedy decoding draws no random numbers, so the training RNG streams (and an exact resume) are
untouched. The verifier scores with σ at its final value (score_row), so val/* at different steps
are comparable.
"""
from __future__ import annotations

import logging
import math

import torch.distributed as dist

from visd_core.config import Config
from visd_core.data.model_inputs import PromptSample, SampleError, load_prompt
from visd_core.data.reader import JsonlReader
from visd_core.eval import summary
from visd_core.eval.formats import EvalItem
from visd_core.eval.runner import score_row
from visd_core.parallel import Dist, all_reduce_max

log = logging.getLogger("visd")


class Validator:
    def __init__(self, cfg: Config, tok, d: Dist):
        self.cfg, self.tok, self.d = cfg, tok, d
        self._samples: list[PromptSample] | None = None     # decoded once, kept (tiny next to the model)
        self._pad: PromptSample | None = None               # what a rank out of samples decodes (dropped)
        self.skipped = 0

    def _load(self) -> list[PromptSample]:
        if self._samples is None:
            c = self.cfg
            records = JsonlReader(c.data.val_path, video_root=c.data.video_root or None, shuffle=False).records
            mine = records[:c.eval.num_samples][self.d.rank::self.d.world_size]
            self._samples = []
            for r in mine:
                try:
                    self._samples.append(load_prompt(r, c.data, self.tok))
                except SampleError as e:
                    self.skipped += 1
                    log.warning("rank %d: validation record skipped: %s", self.d.rank, e)
            self._pad = self._samples[0] if self._samples else None
            if self._pad is None:       # this rank's share is empty or unreadable: borrow any readable record
                for r in records[:c.eval.num_samples]:
                    try:
                        self._pad = load_prompt(r, c.data, self.tok)
                        break
                    except SampleError:
                        continue
        return self._samples

    def run(self, decode) -> dict[str, float]:
        """`decode(samples) -> [(text, truncated)]` greedy answers (collective). Returns val/* metrics,
        identical on every rank; {} when no rank has a validation sample."""
        samples = self._load()
        bs = self.cfg.eval.batch_size
        n_batches = int(all_reduce_max({"n": float(math.ceil(len(samples) / bs))}, self.d)["n"])
        if n_batches == 0:
            return {}
        rows = []
        for b in range(n_batches):
            chunk = samples[b * bs:(b + 1) * bs]
            answers = decode(chunk or [self._pad])      # a rank out of samples decodes padding
            for s, (text, truncated) in zip(chunk, answers):
                rows.append(score_row(EvalItem(s.record), s, text, truncated, self.cfg.reward))
        everyone = [None] * self.d.world_size
        dist.all_gather_object(everyone, {"rows": rows, "skipped": self.skipped})
        rows = [r for part in everyone for r in part["rows"]]
        blk = summary.block(rows)
        m = {"val/n": float(len(rows)), "val/skipped": float(sum(p["skipped"] for p in everyone)),
             "val/reward": sum(r["reward"] for r in rows) / len(rows) if rows else float("nan")}
        for key in ("answer_accuracy", "format_rate"):
            if blk.get(key) is not None:
                m[f"val/{key}"] = blk[key]
        if "temporal" in blk:
            m["val/temporal_mIoU"] = blk["temporal"]["mIoU"]
            m["val/temporal_R@0.5"] = blk["temporal"]["R@0.5"]
        if "spatial" in blk:
            m["val/spatial_mIoU"] = blk["spatial"]["mIoU"]
        return m
