"""Benchmark metrics from JSONL files; prints one JSON object (percentages as in the papers).

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m visd_core.eval", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="benchmark", required=True)
    p = sub.add_parser("vstar", help="V-STAR Acc, tIoU/vIoU per chain, mAM, mLGM")
    p.add_argument("--scores", required=True, help="per-question scores JSONL")
    p = sub.add_parser("charades", help="Charades-STA R@0.3/0.5/0.7 and mIoU")
    p.add_argument("--pred", required=True, help="predictions JSONL")
    p.add_argument("--gt", required=True, help="ground-truth JSONL")
    args = ap.parse_args(argv)
    try:
        row = vstar_row(args.scores) if args.benchmark == "vstar" else charades_row(args.pred, args.gt)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
