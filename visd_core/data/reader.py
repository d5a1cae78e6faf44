"""JSONL reader: validated records for one data-parallel rank, shuffled per epoch, resumable.

    reader = JsonlReader("data/synthetic/train.jsonl", rank=rank, world_size=world, seed=0)
    for record in reader:            # one epoch of this rank's records, then the next epoch
        ...
    state = reader.state_dict()      # {"epoch", "position", ...}: save it with the checkpoint

Every line is validated once, up front, by `schema.parse_record` plus a check that its video file
exists, so a bad record can never stop training mid-epoch. A bad line is skipped, logged with its
line number and reason, and counted per reason in `reader.skipped`:
"bad_json", "missing_video", "duplicate_id", and the schema's kinds ("unknown_task",
"box_out_of_range", "invalid").
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import replace

import numpy as np

from visd_core.data.schema import Record, RecordError, parse_record

log = logging.getLogger(__name__)
MAX_LOGGED_PER_REASON = 10      # the summary line still counts every skip past this many


class JsonlReader:
    def __init__(self, path: str, *, video_root: str | None = None, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True):
        """`video_root`: the folder relative video paths are resolved against (default: the JSONL's
        folder). Yielded records carry the resolved path in `video_path`."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.path, self.rank, self.world_size = path, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.video_root = video_root if video_root is not None else os.path.dirname(os.path.abspath(path))
        self.skipped: Counter[str] = Counter()
        self.records = self._load()
        if not self.records:
            raise ValueError(f"{path}: no valid records ({self._skip_summary()})")
        self.epoch = 0
        self.position = 0       # records of the current epoch already yielded on this rank

    # -- loading ---------------------------------------------------------------------------------
    def _skip(self, lineno: int, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if self.rank == 0 and self.skipped[reason] <= MAX_LOGGED_PER_REASON:   # every rank sees the same
            log.warning("%s:%d: skipped (%s): %s", self.path, lineno, reason, message)

    def _skip_summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none skipped"

    def _load(self) -> list[Record]:
        records, seen_ids = [], set()
        with open(self.path, "rb") as f:    # bytes: a line of bad UTF-8 is one bad line, not a crash
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    self._skip(lineno, "bad_json", str(e))
                    continue
                try:
                    rec = parse_record(obj)
                except RecordError as e:
                    self._skip(lineno, e.kind, str(e))
                    continue
                video = os.path.join(self.video_root, rec.video_path)   # an absolute path stays as is
                if not os.path.isfile(video):
                    self._skip(lineno, "missing_video", f"{video} does not exist")
                    continue
                if rec.id in seen_ids:
                    self._skip(lineno, "duplicate_id", f"id {rec.id!r} already used by an earlier line")
                    continue
                seen_ids.add(rec.id)
                records.append(replace(rec, video_path=video))
        if self.skipped and self.rank == 0:
            log.warning("%s: kept %d records, skipped %d (%s)", self.path, len(records),
                        sum(self.skipped.values()), self._skip_summary())
        return records

    # -- order -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Records per rank per epoch (the same on every rank)."""
        return -(-len(self.records) // self.world_size)

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's record indices for `epoch`. The epoch's permutation (seeded by seed and epoch)
        is padded by wrapping around to a multiple of world_size, as torch's DistributedSampler
        does, so every rank gets len(self) records and the ranks stay in lockstep under FSDP;
        rank r takes every world_size-th index starting at r."""
        n = len(self.records)
        order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                 else np.arange(n))
        padded = np.resize(order, len(self) * self.world_size)     # np.resize repeats from the start
        return padded[self.rank::self.world_size].tolist()

    def __iter__(self):
        """Yield the rest of the current epoch; when it is exhausted the next epoch begins."""
        if self.position >= len(self):      # the consumer stopped right after the last record
            self.epoch, self.position = self.epoch + 1, 0
        indices = self.epoch_indices(self.epoch)
        while self.position < len(indices):
            i = indices[self.position]
            self.position += 1
            yield self.records[i]
        self.epoch, self.position = self.epoch + 1, 0

    # -- resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "world_size": self.world_size, "num_records": len(self.records)}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where `state` was taken. The order is a function of (seed, epoch, number
        of records, world size), so a change in any of them would silently change it: refuse."""
        mine = self.state_dict()
        for key in ("seed", "world_size", "num_records"):
            if state[key] != mine[key]:
                raise ValueError(f"cannot resume {self.path}: {key} was {state[key]}, now {mine[key]}")
        if not 0 <= state["position"] <= len(self):
            raise ValueError(f"cannot resume {self.path}: position {state['position']} outside [0, {len(self)}]")
        self.epoch, self.position = state["epoch"], state["position"]
