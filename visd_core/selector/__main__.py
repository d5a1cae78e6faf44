"""The VP-Selector's command line: build labels (eq. 3), train the selector, predict with it.

    python -m visd_core.selector labels --data train.jsonl --out labels.jsonl \\
        [--reasoner 'http://host:8000/v1|MODEL' ...] [--reasoner-checkpoint DIR|CONFIG.toml ...] \\
        [--limit N] [--num-frames 16] [--max-pixels 401408] [--clip-path DIR] [--api-key-env VISD_PROXY_API_KEY]
    python -m visd_core.selector train --data train.jsonl --labels labels.jsonl --out runs/selector \\
        [--base DIR|CONFIG.toml] [--epochs 10 --lr 2e-4 --weight-decay 0.01 --batch-size 8 --val-frac 0.2 --seed 0]
    python -m visd_core.selector predict --model runs/selector --data val.jsonl [--id ID]

`--reasoner` joins an OpenAI-compatible base URL and a model name with "|" (quote it in the
shell); `--reasoner-checkpoint` is a local model directory (config.json + safetensors) or a TOML
config whose [model] builds the policy (the tiny one when its path is ""). `labels` is resumable:
a rerun skips the ids already in --out. `predict` prints {"id", "kind"} per record. Errors are
one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from visd_core.config import Data as DataCfg
from visd_core.config import Model as ModelCfg
from visd_core.config import load_config
from visd_core.data.reader import JsonlReader
from visd_core.judge.cache import FeedbackCache
from visd_core.selector.labels import write_labels
from visd_core.selector.model import SHEET_MAX_PIXELS, VPSelector
from visd_core.selector.proxy import CheckpointReasoner, HTTPReasoner
from visd_core.selector.train import read_labels, train_selector
from visd_core.visual_prompts import KINDS, ClipRelevance


def model_spec(spec: str) -> ModelCfg:
    """A model directory, or a TOML config's [model]."""
    return load_config(spec).model if spec.endswith(".toml") else ModelCfg(path=spec)


def _data_cfg(a) -> DataCfg:
    return DataCfg(num_frames=a.num_frames, max_pixels=a.max_pixels)


def _records(a):
    reader = JsonlReader(a.data, video_root=a.video_root, shuffle=False)
    return reader.records[:a.limit] if getattr(a, "limit", None) else reader.records


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def cmd_labels(a) -> None:
    if not a.reasoner and not a.reasoner_checkpoint:
        raise ValueError("give at least one --reasoner URL|MODEL or --reasoner-checkpoint DIR")
    clip = ClipRelevance.from_pretrained(a.clip_path) if a.clip_path else None
    kinds = KINDS if clip is not None else tuple(k for k in KINDS if k != "api_prompt")
    if clip is None:
        print("labels: api_prompt skipped (it needs a CLIP: --clip-path DIR); candidates: " + ", ".join(kinds),
              file=sys.stderr)
    data_cfg = _data_cfg(a)
    records = _records(a)
    specs = [("http", s) for s in a.reasoner] + [("ckpt", s) for s in a.reasoner_checkpoint]
    for kind, s in specs:
        if kind == "http" and "|" not in s:
            raise ValueError(f"--reasoner {s!r}: expected 'BASE_URL|MODEL'")
    names = _unique([s.split("|", 1)[1] if k == "http" else Path(s).stem for k, s in specs])
    cache = FeedbackCache(a.cache_dir or f"{a.out}.cache", a.cache_max_mb << 20) if a.reasoner else None
    reasoners = []
    try:
        for (kind, s), name in zip(specs, names):
            if kind == "http":
                url, model = s.split("|", 1)
                reasoners.append(HTTPReasoner(url, model, data_cfg, api_key_env=a.api_key_env, cache=cache, clip=clip,
                                              timeout_s=a.timeout_s, deadline_s=a.deadline_s,
                                              max_retries=a.max_retries, concurrency=a.concurrency,
                                              max_tokens=a.max_tokens, name=name))
            else:
                reasoners.append(CheckpointReasoner(model_spec(s), data_cfg, clip=clip, batch_size=a.batch_size,
                                                    max_new_tokens=a.max_new_tokens, name=name))
        run = write_labels(records, reasoners, a.out, data_cfg, kinds, records_per_batch=a.records_per_batch,
                           progress=not a.no_progress)
    finally:
        for r in reasoners:
            r.close()
    print(run.summary(), file=sys.stderr)


def cmd_train(a) -> None:
    base = model_spec(a.base) if a.base else ModelCfg()
    train_selector(_records(a), read_labels(a.labels), a.out, base=base, data_cfg=_data_cfg(a), epochs=a.epochs,
                   lr=a.lr, weight_decay=a.weight_decay, batch_size=a.batch_size, val_frac=a.val_frac, seed=a.seed,
                   sheet_max_pixels=a.sheet_max_pixels)
    print(f"wrote {a.out}", file=sys.stderr)


def cmd_predict(a) -> None:
    selector = VPSelector.from_dir(a.model)
    reader = JsonlReader(a.data, video_root=a.video_root, shuffle=False)
    records = [r for r in reader.records if a.id is None or r.id == a.id]
    if not records:
        raise ValueError(f"{a.data}: no record with id {a.id!r}")
    for r, kind in zip(records, selector.predict(records)):
        print(json.dumps({"id": r.id, "kind": kind}))
    if selector.unmapped:
        print(f"predict: {selector.unmapped} output(s) named no kind and became 'raw'", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m visd_core.selector", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def data_args(p, frames_default=16):
        p.add_argument("--data", required=True, help="records JSONL (visd_core/data/schema.py)")
        p.add_argument("--video-root", default=None, help="folder of relative video paths (default: the JSONL's)")
        p.add_argument("--num-frames", type=int, default=frames_default, help="frames sampled per video")
        p.add_argument("--max-pixels", type=int, default=DataCfg.max_pixels,
                       help="pixel budget per frame (the policy's data.max_pixels)")

    p = sub.add_parser("labels", help="VP-Selector labels by eq. 3 from proxy reasoners")
    data_args(p)
    p.add_argument("--out", required=True, help="labels JSONL (appended; resumable)")
    p.add_argument("--reasoner", action="append", default=[], metavar="URL|MODEL")
    p.add_argument("--reasoner-checkpoint", action="append", default=[], metavar="DIR|CONFIG.toml")
    p.add_argument("--limit", type=int, default=None, help="label only the first N records")
    p.add_argument("--clip-path", default="", help="local CLIP directory (enables api_prompt)")
    p.add_argument("--api-key-env", default="VISD_PROXY_API_KEY", help="env var holding the endpoint's API key")
    p.add_argument("--cache-dir", default="", help="reply cache (default: <out>.cache)")
    p.add_argument("--cache-max-mb", type=int, default=256)
    p.add_argument("--timeout-s", type=float, default=120.0, help="per HTTP call")
    p.add_argument("--deadline-s", type=float, default=900.0, help="per batch of HTTP calls")
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=1024, help="HTTP reasoners' reply budget")
    p.add_argument("--max-new-tokens", type=int, default=768, help="checkpoint reasoners' generation budget")
    p.add_argument("--batch-size", type=int, default=8, help="checkpoint reasoners' generation batch")
    p.add_argument("--records-per-batch", type=int, default=8)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(fn=cmd_labels)

    p = sub.add_parser("train", help="train the selector on labels")
    data_args(p)
    p.add_argument("--labels", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--base", default="", help="base model DIR or CONFIG.toml (default: the tiny [model])")
    p.add_argument("--epochs", type=int, default=10)              # visioncoach App. C.4
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--val-frac", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sheet-max-pixels", type=int, default=SHEET_MAX_PIXELS, help="pixel budget of the contact sheet")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("predict", help="predict a kind per record")
    p.add_argument("--model", required=True, help="a directory written by train")
    p.add_argument("--data", required=True)
    p.add_argument("--video-root", default=None)
    p.add_argument("--id", default=None)
    p.set_defaults(fn=cmd_predict)

    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        a.fn(a)
    except ValueError as e:
        print(f"python -m visd_core.selector {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
