"""Checks a run's inputs exist before any process group, model or reader is built.

A missing file used to surface as a `FileNotFoundError` traceback deep inside the reader, once per
rank. `check_inputs` turns each missing input into one line that says what was expected and how to
get it; `train.py` prints the lines from rank 0 only and exits 2.
"""
from __future__ import annotations

import os

from visd_core.config import Config

SYNTHETIC_HINT = ("generate the synthetic set with `python -m visd_core.data.synthetic --out data/synthetic "
                  "--n 1000 --seed 0` (`make train` does it), or point --data.train_path at your JSONL")


class InputError(ValueError):
    """One or more of a run's inputs is missing; the message has one line per input."""


def missing_inputs(cfg: Config) -> list[str]:
    """One line per missing input (empty when everything a run reads at start-up is there)."""
    problems = []
    d, m = cfg.data, cfg.model
    if not os.path.isfile(d.train_path):
        problems.append(f"data.train_path {d.train_path}: no such file; {SYNTHETIC_HINT}")
    if cfg.eval.every > 0 and not os.path.isfile(d.val_path):
        problems.append(f"data.val_path {d.val_path}: no such file (eval.every = {cfg.eval.every} validates on it); "
                        "set --eval.every=0 to train without validation")
    if d.video_root and not os.path.isdir(d.video_root):
        problems.append(f"data.video_root {d.video_root}: no such directory (the folder relative video_path "
                        "values are resolved against; \"\" = the JSONL's folder)")
    if m.path:
        if not os.path.isdir(m.path):
            problems.append(f"model.path {m.path}: no such directory (a local Hugging Face-style Qwen2.5-VL "
                            "checkpoint: config.json + *.safetensors; nothing is downloaded; \"\" = tiny model)")
        elif not os.path.isfile(os.path.join(m.path, "config.json")):
            problems.append(f"model.path {m.path}: no config.json in it (expected a Hugging Face-style "
                            "checkpoint directory)")
    if m.tokenizer and not os.path.exists(m.tokenizer):
        problems.append(f"model.tokenizer {m.tokenizer}: no such file or directory (a *.tiktoken file or a local "
                        "tokenizer directory; \"\" = the bundled Qwen ranks)")
    return problems


def check_inputs(cfg: Config) -> None:
    """Raise InputError listing every missing input, one line each."""
    problems = missing_inputs(cfg)
    if problems:
        raise InputError("\n".join(problems))
