"""summary.json of an evaluation run, from its predictions.jsonl rows (percentages as in the papers).

    {"n_records", "n_scored", "n_skipped", "overall": BLOCK, "per_task": {task: BLOCK},
     "vstar": {"Acc", "tIoU_chain1", …, "mAM", "mLGM", "n"},     # where rows carry chain annotations
     "skipped": {reason: [ids]}, …the run's settings}

    BLOCK = {"n", "answer_accuracy", "format_rate",
             "temporal": {"R@0.3", "R@0.5", "R@0.7", "mIoU", "n", "unparsed"},   # rows with a window
             "spatial": {"mIoU", "n"}}                                            # rows with boxes

- answer_accuracy: the verifier's answer_correct over the rows it can judge (MCQ letter exact,
  ROUGE / tIoU / box IoU >= 0.5 otherwise; rewards/reward.py); None when it judges none.
- format_rate: rows whose format reward is full (rewards/format.py).
- temporal: Charades-STA's R@m and mIoU (charades.py) of each row's `temporal_iou`; "unparsed"
  counts rows whose output names no forward interval (scored 0).
- spatial: the mean `spatial_iou` (V-STaR's per-frame vIoU for "where" rows, the answer-box IoU
  for other visual QA).
- vstar: V-STaR's table row (vstar.py). A question counts when its "what" row was scored; its
  chain k takes Acc from that row, tIoU from its chain-k "when" row and vIoU from its chain-k
  "where" row, a missing one scoring 0 (as V-STaR's eval.py scores a missing answer).
"""
from __future__ import annotations

from collections import defaultdict

from visd_core.data.schema import TASKS
from visd_core.eval import charades, vstar


def block(rows: list[dict]) -> dict:
    out: dict = {"n": len(rows)}
    judged = [r["answer_correct"] for r in rows if r["answer_correct"] is not None]
    out["answer_accuracy"] = 100 * sum(judged) / len(judged) if judged else None
    out["format_rate"] = 100 * sum(r["format_ok"] for r in rows) / len(rows) if rows else None
    timed = [r for r in rows if r["temporal_iou"] is not None]
    if timed:
        out["temporal"] = charades.summarize([r["temporal_iou"] for r in timed],
                                             unparsed=sum(r["interval"] is None for r in timed))
    boxed = [r["spatial_iou"] for r in rows if r["spatial_iou"] is not None]
    if boxed:
        out["spatial"] = {"mIoU": 100 * sum(boxed) / len(boxed), "n": len(boxed)}
    return out


def vstar_row(rows: list[dict]) -> dict | None:
    """V-STaR's Acc, tIoU/vIoU per chain, mAM and mLGM; None without both chains' annotations."""
    parts: dict[str, dict] = defaultdict(dict)
    for r in rows:
        if r.get("vstar"):
            parts[r["vstar"]["qid"]][(r["vstar"]["part"], r["vstar"]["chain"])] = r
    scores = []
    for qid, got in parts.items():
        what = got.get(("what", None))
        if what is None:
            continue
        acc = float(bool(what["answer_correct"]))
        for k in vstar.CHAINS:
            when, where = got.get(("when", k)), got.get(("where", k))
            scores.append(vstar.QuestionScore(qid, k, acc, when["temporal_iou"] if when else 0.0,
                                              where["spatial_iou"] if where else 0.0))
    try:
        return vstar.summarize(scores)
    except ValueError:          # no question with both chains
        return None


def summarize(rows: list[dict], skipped: dict[str, list[str]], n_records: int, settings: dict) -> dict:
    """`rows` in data order (so a resumed run sums in the same order as an uninterrupted one)."""
    out = {**settings, "n_records": n_records, "n_scored": len(rows),
           "n_skipped": sum(len(v) for v in skipped.values()), "overall": block(rows),
           "per_task": {t: block([r for r in rows if r["task"] == t]) for t in TASKS
                        if any(r["task"] == t for r in rows)}}
    row = vstar_row(rows)
    if row is not None:
        out["vstar"] = row
    out["skipped"] = {k: list(v) for k, v in skipped.items() if v}
    return out
