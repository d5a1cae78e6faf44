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
        self._remainder: np.ndarray | None = None   # the current epoch's order after a world-size change

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
        """Records per rank in a full epoch (the same on every rank)."""
        return -(-len(self.records) // self.world_size)

    def _global_order(self, epoch: int) -> np.ndarray:
        """The epoch's record indices over all ranks, before padding: the seeded permutation, or
        what was left of it when a resumed run changed world size (see `load_state_dicts`)."""
        if self._remainder is not None and epoch == self.epoch:
            return self._remainder
        return self._seeded_order(epoch)

    def _seeded_order(self, epoch: int) -> np.ndarray:
        n = len(self.records)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    @staticmethod
    def _padded(order: np.ndarray, world_size: int) -> np.ndarray:
        """`order` wrapped around to a multiple of world_size (np.resize repeats from the start)."""
        return np.resize(order, -(-len(order) // world_size) * world_size)

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's record indices for `epoch`. The epoch's order (seeded by seed and epoch) is
        padded by wrapping around to a multiple of world_size, as torch's DistributedSampler does,
        so every rank gets the same count and the ranks stay in lockstep under FSDP; rank r takes
        every world_size-th index starting at r."""
        return self._padded(self._global_order(epoch), self.world_size)[self.rank::self.world_size].tolist()

    def __iter__(self):
        """Yield the rest of the current epoch; when it is exhausted the next epoch begins."""
        indices = self.epoch_indices(self.epoch)
        if self.position >= len(indices):   # the consumer stopped right after the last record
            self._next_epoch()
            indices = self.epoch_indices(self.epoch)
        while self.position < len(indices):
            i = indices[self.position]
            self.position += 1
            yield self.records[i]
        self._next_epoch()

    def _next_epoch(self) -> None:
        self.epoch, self.position, self._remainder = self.epoch + 1, 0, None

    # -- resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "world_size": self.world_size, "num_records": len(self.records),
                "remainder": None if self._remainder is None else self._remainder.tolist()}

    def _check_same_data(self, state: dict) -> None:
        for key in ("seed", "num_records"):
            if state[key] != self.state_dict()[key]:
                raise ValueError(f"cannot resume {self.path}: {key} was {state[key]}, now {self.state_dict()[key]}")

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where `state` was taken, on the same world size (`load_state_dicts`
        converts a position taken on another one). The order is a function of (seed, epoch, number
        of records), so a change in either would silently change it: refuse."""
        self._check_same_data(state)
        if state["world_size"] != self.world_size:
            raise ValueError(f"cannot resume {self.path}: world_size was {state['world_size']}, now "
                             f"{self.world_size} (pass every old rank's state to load_state_dicts)")
        self.epoch = state["epoch"]
        rem = state.get("remainder")
        self._remainder = None if rem is None else np.asarray(rem, dtype=np.int64)
        n = len(self.epoch_indices(self.epoch))
        if not 0 <= state["position"] <= n:
            raise ValueError(f"cannot resume {self.path}: position {state['position']} outside [0, {n}]")
        self.position = state["position"]

    def load_state_dicts(self, states: list[dict]) -> None:
        """Resume from the states of every rank of a run on any world size (states[r] from rank r).

        Same world size: this rank's own state. Another one (a node lost, GPUs added): the records
        of the current epoch that no old rank has consumed yet, in the epoch's order, become this
        epoch's remainder, dealt round-robin over the new ranks, so every record of the epoch is
        still consumed exactly once; later epochs follow the normal seeded order. Old ranks that had
        already moved on to the next epoch (skips make positions differ) consumed all of their share
        of this one; the few records they took from the next epoch may be seen again (logged)."""
        if len(states) != states[0]["world_size"]:
            raise ValueError(f"cannot resume {self.path}: {len(states)} rank states for a world of "
                             f"{states[0]['world_size']}")
        if len(states) == self.world_size:
            self.load_state_dict(states[self.rank])
            return
        for s in states:
            self._check_same_data(s)
        epoch = min(s["epoch"] for s in states)
        old_world = len(states)
        carried = [s["remainder"] for s in states if s["epoch"] == epoch and s.get("remainder") is not None]
        # the old world's order of that epoch: its own remainder if it had itself been resized in it
        order = np.asarray(carried[0], dtype=np.int64) if carried else self._seeded_order(epoch)
        padded = self._padded(order, old_world)
        consumed = np.zeros(len(padded), dtype=bool)
        ahead = 0
        for r, s in enumerate(states):
            done = s["position"] if s["epoch"] == epoch else len(padded) // old_world
            ahead += s["position"] if s["epoch"] > epoch else 0
            consumed[r::old_world][:done] = True
        self.epoch, self.position = epoch, 0
        self._remainder = padded[~consumed].astype(np.int64)
        if self.rank == 0:
            log.warning("%s: resuming a %d-rank position on %d ranks: %d records of epoch %d left, dealt over "
                        "the new ranks%s", self.path, len(states), self.world_size, len(self._remainder), epoch,
                        f"; {ahead} records already read from epoch {epoch + 1} will be read again" if ahead else "")
