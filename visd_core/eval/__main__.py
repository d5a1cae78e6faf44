"""Evaluate a trained policy on a benchmark, or compute benchmark metrics from JSONL files; prints
one JSON object (percentages as in the papers).

    python -m visd_core.eval run --model DIR --data FILE --out DIR [--num-frames N --max-new-tokens N
        --batch-size N --temperature 0 --limit N --video-root DIR --format auto|jsonl|vstar|charades]
        DIR: an exported model (config.json + safetensors) or a checkpoint runs/X/checkpoints/step_NNNNNN
        FILE: the project's JSONL, V-STaR's annotation JSON or Charades-STA's `sid s e##query` lines
        -> <out>/predictions.jsonl (resumable) and <out>/summary.json, whose "overall" block is printed
        (visd_core/eval/runner.py, formats.py, summary.py)
    python -m visd_core.eval vstar --scores S.jsonl
        S: {"qid": …, "chain": 1|2, "acc": 0..1, "tiou": 0..1, "viou": 0..1} per line
        -> {"Acc", "tIoU_chain1", "tIoU_chain2", "vIoU_chain1", "vIoU_chain2", "mAM", "mLGM", "n"}
    python -m visd_core.eval charades --pred P.jsonl --gt G.jsonl
        P: {"id": …, "segment": [s, e]} or {"id": …, "output": "<raw model text>"} per line
        G: {"id": …, "segment": [s, e]} per line
        -> {"R@0.3", "R@0.5", "R@0.7", "mIoU", "n", "unparsed"}

A ground-truth query with no prediction, or whose prediction does not parse to a forward
interval, scores IoU 0 and is counted in "unparsed". A malformed line stops the run with exit
status 2 and a message naming the file and line.
"""
from __future__ import annotations

import argparse
import json
import sys

from visd_core.eval import charades, vstar
from visd_core.eval.jsonl import InputError, identifier, number, read_objects, segment
from visd_core.rewards.iou import interval_iou


def vstar_row(scores_path: str) -> dict:
    scores, seen = [], set()
    for where, obj in read_objects(scores_path):
        qid = identifier(obj, "qid", where)
        chain = obj.get("chain")
        if chain not in vstar.CHAINS or isinstance(chain, bool):
            raise InputError(f"{where}: 'chain' must be 1 or 2, got {chain!r}")
        if (qid, chain) in seen:
            raise InputError(f"{where}: question {qid!r} has a second chain-{chain} line")
        seen.add((qid, chain))
        scores.append(vstar.QuestionScore(qid, chain, *(number(obj, k, where, 0, 1) for k in ("acc", "tiou", "viou"))))
    try:
        return vstar.summarize(scores)
    except ValueError as e:
        raise InputError(f"{scores_path}: {e}") from None


def charades_row(pred_path: str, gt_path: str) -> dict:
    gt: dict[str, tuple[float, float]] = {}
    for where, obj in read_objects(gt_path):
        qid, seg = identifier(obj, "id", where), segment(obj, where)
        if qid in gt:
            raise InputError(f"{where}: duplicate id {qid!r}")
        if not 0 <= seg[0] <= seg[1]:
            raise InputError(f"{where}: ground-truth segment {list(seg)} must satisfy 0 <= start <= end")
        gt[qid] = seg
    pred: dict[str, tuple[float, float] | None] = {}
    for where, obj in read_objects(pred_path):
        qid = identifier(obj, "id", where)
        if qid in pred:
            raise InputError(f"{where}: duplicate id {qid!r}")
        if qid not in gt:
            raise InputError(f"{where}: id {qid!r} is not in {gt_path}")
        if "segment" in obj:
            seg = segment(obj, where)
            pred[qid] = seg if 0 <= seg[0] <= seg[1] else None
        elif isinstance(obj.get("output"), str):
            pred[qid] = charades.segment_of_output(obj["output"])
        else:
            raise InputError(f"{where}: need 'segment': [s, e] or 'output': \"<model text>\"")
    ious = [interval_iou(pred[q], g) if pred.get(q) is not None else 0.0 for q, g in gt.items()]
    try:
        return charades.summarize(ious, unparsed=sum(pred.get(q) is None for q in gt))
    except ValueError as e:
        raise InputError(f"{gt_path}: {e}") from None


def _rounded(v):
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    return round(v, 4) if isinstance(v, float) else v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m visd_core.eval", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="benchmark", required=True)
    p = sub.add_parser("vstar", help="V-STAR Acc, tIoU/vIoU per chain, mAM, mLGM")
    p.add_argument("--scores", required=True, help="per-question scores JSONL")
    p = sub.add_parser("charades", help="Charades-STA R@0.3/0.5/0.7 and mIoU")
    p.add_argument("--pred", required=True, help="predictions JSONL")
    p.add_argument("--gt", required=True, help="ground-truth JSONL")
    p = sub.add_parser("run", help="generate, verify and score a model on a benchmark")
    p.add_argument("--model", required=True, help="exported model directory or checkpoint step folder")
    p.add_argument("--data", required=True, help="JSONL records, V-STaR annotation JSON or Charades-STA lines")
    p.add_argument("--out", required=True, help="folder for predictions.jsonl and summary.json")
    p.add_argument("--num-frames", type=int, default=None, help="frames per video (default: the model's)")
    p.add_argument("--max-new-tokens", type=int, default=768)
    p.add_argument("--batch-size", type=int, default=4, help="records decoded together")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--limit", type=int, default=0, help="only the first N records (0 = all)")
    p.add_argument("--video-root", default=None, help="folder of the videos (default: the data file's)")
    p.add_argument("--format", default="auto", choices=("auto", "jsonl", "vstar", "charades"))
    args = ap.parse_args(argv)
    try:
        if args.benchmark == "run":
            from visd_core.eval import runner    # torch and the model: only for this command
            row = runner.run(args.model, args.data, args.out, num_frames=args.num_frames,
                             max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                             temperature=args.temperature, limit=args.limit, video_root=args.video_root,
                             fmt=args.format)["overall"]
        else:
            row = vstar_row(args.scores) if args.benchmark == "vstar" else charades_row(args.pred, args.gt)
    except (InputError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(_rounded(row)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
