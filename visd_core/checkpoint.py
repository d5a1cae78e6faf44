"""Checkpoints: `torch.distributed.checkpoint` step folders with a commit marker, resume, keep-k.

    <root>/step_000020/   DCP files (.metadata, __<rank>_0.distcp) + COMMITTED (written last)

A folder counts only once rank 0 has written `COMMITTED` after every rank's files are down, so a
crash mid-save leaves an incomplete folder that resume ignores and the next save deletes. After a
commit, complete checkpoints beyond the newest `keep` (>= 2) are deleted: a crash during the next
save still leaves a complete one. DCP stores the sharded model and optimizer (resharding-safe: a
run may resume on another world size), the frozen models a recipe carries (VISD's EMA teacher, GSPO's KL
reference; COMMITTED says which), and per-rank extras (the caller's dict and
the torch / numpy / python / CUDA RNG states of every rank).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_state_dict, set_model_state_dict,
                                                     set_state_dict)

from visd_core.parallel import Dist

log = logging.getLogger(__name__)

MARKER = "COMMITTED"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step_{step:06d}"


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def complete_checkpoints(root: str | Path) -> list[Path]:
    """Committed step folders under `root`, oldest first."""
    return [p for _, p in _step_dirs(Path(root)) if (p / MARKER).is_file()]


def _resolve(root: Path, resume: str) -> Path | None:
    if resume == "none":
        return None
    if resume == "auto":
        done = complete_checkpoints(root)
        return done[-1] if done else None
    p = Path(resume)
    if not p.is_dir():
        raise ValueError(f"checkpoint.resume {resume}: no such directory")
    if not (p / MARKER).is_file():
        raise ValueError(f"checkpoint.resume {resume}: incomplete checkpoint (no {MARKER} marker)")
    return p


def restart_count() -> int:
    """How many times torchrun's elastic agent has restarted this job (`--max-restarts`): 0 at first."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def effective_resume(resume: str) -> str:
    """`checkpoint.resume`, except that a job torchrun restarted after a lost rank resumes from its
    latest complete checkpoint ("auto") even though its command line says "none"."""
    if resume == "none" and restart_count() > 0:
        log.warning("restart %d of this job (torchrun --max-restarts): resuming from the latest complete "
                    "checkpoint", restart_count())
        return "auto"
    return resume


def remove_incomplete(root: str | Path) -> list[Path]:
    """Delete step folders without a commit marker: saves a crashed or killed attempt left behind.
    Call only while no save can be running (at start-up, on one rank)."""
    doomed = [p for _, p in _step_dirs(Path(root)) if not (p / MARKER).is_file()]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
        log.warning("checkpoint: removed %s, an incomplete save of an earlier attempt", p)
    return doomed


def resolve_resume(root: str | Path, resume: str, d: Dist) -> Path | None:
    """The folder to resume from: None ("none", or "auto" with nothing complete), the newest
    complete one ("auto"), or the given step folder, which must be complete. Collective: rank 0
    decides, so every rank loads the same folder; it then removes incomplete step folders."""
    box = [None]
    if d.is_main:
        try:
            box[0] = ("ok", _resolve(Path(root), resume))
            remove_incomplete(root)     # after: an incomplete folder named by the user is an error, kept
        except ValueError as e:
            box[0] = ("error", str(e))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise ValueError(value)
    return value


# ---------------------------------------------------------------------------- RNG
def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


# ---------------------------------------------------------------------------- save / load
def save_checkpoint(root: str | Path, step: int, d: Dist, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    teacher: nn.Module | None = None, reference: nn.Module | None = None,
                    extra: dict | None = None, keep: int = 2, before_commit=None) -> Path:
    """Write `<root>/step_<step>`, commit it, then prune. Collective. `extra` is this rank's picklable
    state (schedules, data position, ...); each rank gets its own back from `load_checkpoint`."""
    if keep < 2:
        raise ValueError(f"checkpoint.keep = {keep}: must be >= 2 (a crash while writing must leave one)")
    root, path = Path(root), step_dir(root, step)
    if d.is_main and path.exists():     # a crashed save of this step, or a run re-doing it: start clean
        shutil.rmtree(path)
    dist.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    if teacher is not None:
        state["teacher"] = get_model_state_dict(teacher)
    if reference is not None:       # the frozen KL reference (gspo / visioncoach): the SFT policy, not re-derivable
        state["reference"] = get_model_state_dict(reference)
    per_rank = [None] * d.world_size
    dist.all_gather_object(per_rank, {"extra": extra or {}, "rng": rng_state()})
    # One bytes leaf, identical on every rank (DCP writes it once); unpickled by us, not by torch.load.
    state["ranks"] = pickle.dumps(per_rank)
    dcp.save(state, checkpoint_id=str(path))
    if before_commit is not None:       # fault injection in tests: die with the files half committed
        before_commit()
    dist.barrier()                      # every rank's shard files are complete before the marker
    if d.is_main:
        tmp = path / (MARKER + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"step": step, "world_size": d.world_size, "teacher": teacher is not None,
                       "reference": reference is not None}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path / MARKER)  # atomic: the folder is complete from this instant
        _prune(root, keep)
    dist.barrier()
    return path


def _prune(root: Path, keep: int) -> None:
    dirs = _step_dirs(root)
    complete = [p for _, p in dirs if (p / MARKER).is_file()]
    doomed = complete[:-keep] + [p for _, p in dirs if not (p / MARKER).is_file()]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
        log.info("checkpoint: removed %s", p)


def load_checkpoint(path: str | Path, d: Dist, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    teacher: nn.Module | None = None, reference: nn.Module | None = None) -> tuple[int, dict]:
    """Restore model, optimizer, teacher and this rank's RNG in place; return (step, this rank's extra).
    Collective. A checkpoint written on another world size restores everything but per-rank state:
    every rank then gets rank 0's extra with the list of every old rank's extra under "all_ranks"
    (the caller converts what it can, e.g. the data position) and keeps its own RNG (warned)."""
    path = Path(path)
    marker = path / MARKER
    if not marker.is_file():
        raise ValueError(f"checkpoint {path}: incomplete or not a checkpoint (no {MARKER} marker)")
    meta = json.loads(marker.read_text())
    if teacher is not None and not meta["teacher"]:
        raise ValueError(f"checkpoint {path}: holds no teacher, but a teacher was asked for")
    if reference is not None and not meta.get("reference"):
        raise ValueError(f"checkpoint {path}: holds no reference policy, but one was asked for")
    model_sd, optim_sd = get_state_dict(model, optimizer)     # sharded targets, loaded into in place
    state = {"model": model_sd, "optim": optim_sd, "ranks": b""}
    if teacher is not None:
        state["teacher"] = get_model_state_dict(teacher)
    if reference is not None:
        state["reference"] = get_model_state_dict(reference)
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    if teacher is not None:
        set_model_state_dict(teacher, state["teacher"])
    if reference is not None:
        set_model_state_dict(reference, state["reference"])
    per_rank = pickle.loads(state["ranks"])
    if len(per_rank) == d.world_size:
        mine = per_rank[d.rank]
        set_rng_state(mine["rng"])
    else:
        mine = {"extra": {**per_rank[0]["extra"], "all_ranks": [r["extra"] for r in per_rank]}}
        if d.is_main:
            log.warning("checkpoint %s was written by %d ranks, resuming on %d: per-rank RNG states are not "
                        "restored and every rank gets rank 0's extra state", path, len(per_rank), d.world_size)
    return meta["step"], mine["extra"]
