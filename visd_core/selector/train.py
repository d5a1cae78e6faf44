"""Train the VP-Selector on eq. 3 labels (visioncoach §3.3 "Training", App. C.4).

    python -m visd_core.selector train --data train.jsonl --labels labels.jsonl --out runs/selector [--base DIR]

A |𝒱|-way choice cast as generation: the prompt (model.py: contact sheet + question + key objects +
instruction) is followed by the label as a short string and <|im_end|>; the loss is token-level
cross-entropy on those label tokens only. LoRA (r 16, α 32, dropout 0.05) on the language model's
q/k/v/o and MLP projections, the backbone frozen; AdamW on the LoRA parameters only, App. C.4's
10 epochs, lr 2e-4, weight decay 0.01, batch 8. Single process.

A seeded `val_frac` of the labeled records is held out. Each epoch prints the mean train loss and
the held-out accuracy of greedy predictions next to the majority-class baseline (the training
labels' most common kind, ties as eq. 3 breaks them: raw, then KINDS order). The output folder
holds the adapter (safetensors), and selector.json: the base (a checkpoint path or the tiny
[model] fields and seed), the data and sheet settings predict must reuse, the label counts and
the accuracies.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from visd_core.config import Data as DataCfg
from visd_core.config import Model as ModelCfg
from visd_core.data.model_inputs import PromptSample, SampleError, collate, decode_frames
from visd_core.data.schema import Record
from visd_core.model.build import build_unsharded
from visd_core.model.logits import completion_logits
from visd_core.model.policy import ENDOFTEXT_ID
from visd_core.selector.lora import add_lora, lora_parameters, save_adapter
from visd_core.selector.model import (ADAPTER, META, SHEET_MAX_PIXELS, base_reference, greedy_kinds, label_ids,
                                      selector_sample)
from visd_core.selector.proxy import tokenizer_spec
from visd_core.tokenizer import load_tokenizer
from visd_core.visual_prompts import KINDS


def read_labels(path: str | Path) -> dict[str, str]:
    """{record id: kind} from a labels file (python -m visd_core.selector labels)."""
    labels = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(obj, dict) or obj.get("label") not in KINDS or not isinstance(obj.get("id"), str):
            raise ValueError(f"{path}:{n}: need {{\"id\": str, \"label\": one of {', '.join(KINDS)}}}")
        labels[obj["id"]] = obj["label"]
    return labels


def majority(labels: list[str]) -> str:
    """The most common kind; ties as eq. 3 breaks them (raw, then KINDS order)."""
    counts = Counter(labels)
    return min(counts, key=lambda k: (-counts[k], k != "raw", KINDS.index(k)))


def split(n: int, val_frac: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) indices: a seeded permutation, round(n·val_frac) held out (at least one
    when val_frac > 0 and n >= 2)."""
    if not 0 <= val_frac < 1:
        raise ValueError(f"--val-frac must be in [0, 1), got {val_frac}")
    n_val = round(n * val_frac)
    if val_frac > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n).tolist()
    return sorted(order[n_val:]), sorted(order[:n_val])


def train_selector(records: list[Record], labels: dict[str, str], out: str | Path, *, base: ModelCfg,
                   data_cfg: DataCfg, epochs: int = 10, lr: float = 2e-4, weight_decay: float = 0.01,
                   batch_size: int = 8, val_frac: float = 0.2, seed: int = 0,
                   sheet_max_pixels: int = SHEET_MAX_PIXELS, log=print) -> dict:
    """Train, evaluate each epoch, write `out`; returns the metadata written to selector.json."""
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError("need epochs >= 1, batch_size >= 1 and lr > 0")
    tok = load_tokenizer(tokenizer_spec(base))
    samples: list[PromptSample] = []
    targets: list[str] = []
    unreadable = 0
    for r in records:
        if r.id not in labels:
            continue
        try:
            samples.append(selector_sample(r, decode_frames(r, data_cfg), tok, sheet_max_pixels))
        except SampleError as e:
            log(f"skipped: {e}")
            unreadable += 1
            continue
        targets.append(labels[r.id])
    if len(samples) < 1:
        raise ValueError(f"no record has a label (records: {len(records)}, labels: {len(labels)})")
    tr, va = split(len(samples), val_frac, seed)
    maj = majority([targets[i] for i in tr])
    maj_acc = float(np.mean([targets[i] == maj for i in va])) if va else None
    log(f"{len(samples)} labeled records ({len(tr)} train, {len(va)} held out; {unreadable} unreadable); "
        f"train labels: " + ", ".join(f"{k} {c}" for k, c in Counter(targets[i] for i in tr).most_common()))

    torch.manual_seed(seed)            # LoRA's A init, dropout, and nothing else draws
    model = build_unsharded(base, seed=seed)
    add_lora(model)
    params = lora_parameters(model)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    log(f"LoRA: {sum(p.numel() for p in params):,} trainable parameters on a "
        f"{sum(p.numel() for p in model.parameters()):,}-parameter model")
    rng = np.random.default_rng([seed, 1])
    target_ids = {k: label_ids(tok, k) for k in KINDS}
    history = []
    for epoch in range(1, epochs + 1):
        t0 = time.monotonic()
        model.train()
        losses = []
        order = [tr[i] for i in rng.permutation(len(tr))]
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = collate([(samples[i].prompt_ids, target_ids[targets[i]], samples[i]) for i in rows], ENDOFTEXT_ID)
            cl = completion_logits(model, batch)
            loss = F.cross_entropy(cl.logits.float(), cl.targets)     # token-level CE on the label tokens
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        acc, unmapped = None, 0
        if va:
            pred = greedy_kinds(model, tok, [samples[i] for i in va], batch_size)
            unmapped = sum(p is None for p in pred)
            acc = float(np.mean([(p or "raw") == targets[i] for p, i in zip(pred, va)]))   # as predict maps them
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_accuracy": acc,
                        "val_unmapped": unmapped})
        held_out = (f"held-out accuracy {acc:.3f} vs majority '{maj}' {maj_acc:.3f} (n={len(va)}, {unmapped} "
                    "named no kind)") if va else "no held-out records"
        log(f"epoch {epoch}/{epochs}: train loss {np.mean(losses):.4f}, {held_out}, {time.monotonic() - t0:.1f}s")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_adapter(model, out / ADAPTER)
    meta = {"base": base_reference(base), "base_seed": seed, "labels": list(KINDS),
            "data": dataclasses.asdict(data_cfg), "sheet_max_pixels": sheet_max_pixels,
            "label_counts": dict(Counter(targets[i] for i in tr)), "majority": maj,
            "val_accuracy": history[-1]["val_accuracy"], "majority_accuracy": maj_acc,
            "n_train": len(tr), "n_val": len(va), "val_ids": [samples[i].record.id for i in va],
            "train": {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
                      "val_frac": val_frac, "seed": seed}, "history": history}
    tmp = out / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out / META)
    return meta
