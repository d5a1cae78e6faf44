"""V-STAR metrics: what (answer accuracy), when (m_tIoU), where (m_vIoU) along two reasoning
chains — chain 1 what→when→where, chain 2 what→where→when — and their aggregates
(visioncoach Appendix A eq. 9–12; visd §C.3 eq. 18):

    AM_k  = (Acc + m_tIoU_k + m_vIoU_k) / 3                                          eq. 9
    LGM_k = −(ln(1 − Acc + ε) + ln(1 − m_tIoU_k + ε) + ln(1 − m_vIoU_k + ε)) / 3      eq. 11
    mAM, mLGM = the means of AM_k, LGM_k over the chains                              eq. 12

computed on fractions and reported ×100, as the papers' tables are. LGM is a mean of −ln(1 − x):
it grows without bound as a term nears 1, which ε guards (V-STAR's own code has no guard).
Reading the formula this way reproduces the papers' rows (tests/eval/test_vstar.py).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from visd_core.rewards.iou import Box, Interval, box_iou, interval_iou, scale_box
from visd_core.rewards.parse import answer_or_text, parse_claims, parse_interval

CHAINS = (1, 2)
LGM_EPS = 1e-6           # keeps ln finite when a term reaches 1; shifts table values by < 1e-4


@dataclass(frozen=True)
class QuestionScore:
    qid: str
    chain: int                                   # 1: what→when→where, 2: what→where→when
    acc: float                                   # the "what" answer judged correct, in [0, 1]
    tiou: float                                  # temporal IoU of the "when" answer
    viou: float                                  # mean visual IoU of the "where" answer


def arithmetic_mean(acc: float, tiou: float, viou: float) -> float:
    """visioncoach eq. 9 (visd eq. 18)."""
    return (acc + tiou + viou) / 3


def log_geometric_mean(acc: float, tiou: float, viou: float, eps: float = LGM_EPS) -> float:
    """visioncoach eq. 11."""
    return -(math.log(1 - acc + eps) + math.log(1 - tiou + eps) + math.log(1 - viou + eps)) / 3


def aggregate(acc: dict[int, float], tiou: dict[int, float], viou: dict[int, float]) -> dict[str, float]:
    """Per-chain means (fractions) -> the table's columns in percent (eq. 12 over both chains).
    `Acc` is the mean of the chains' accuracies (V-STAR asks "what" once, so they are equal)."""
    am = [arithmetic_mean(acc[k], tiou[k], viou[k]) for k in CHAINS]
    lgm = [log_geometric_mean(acc[k], tiou[k], viou[k]) for k in CHAINS]
    return {"Acc": 100 * sum(acc[k] for k in CHAINS) / len(CHAINS),
            "tIoU_chain1": 100 * tiou[1], "tIoU_chain2": 100 * tiou[2],
            "vIoU_chain1": 100 * viou[1], "vIoU_chain2": 100 * viou[2],
            "mAM": 100 * sum(am) / len(am), "mLGM": 100 * sum(lgm) / len(lgm)}


def summarize(scores: Iterable[QuestionScore]) -> dict[str, float]:
    """The V-STAR table row (percent) from per-question scores, plus n = distinct questions."""
    by_chain: dict[int, list[QuestionScore]] = {k: [] for k in CHAINS}
    for s in scores:
        if s.chain not in by_chain:
            raise ValueError(f"question {s.qid!r}: chain must be 1 or 2, got {s.chain!r}")
        by_chain[s.chain].append(s)
    for k, rows in by_chain.items():
        if not rows:
            raise ValueError(f"no chain-{k} scores: V-STAR's mAM and mLGM need both chains")

    def mean(k: int, field: str) -> float:
        return sum(getattr(s, field) for s in by_chain[k]) / len(by_chain[k])

    row = aggregate({k: mean(k, "acc") for k in CHAINS}, {k: mean(k, "tiou") for k in CHAINS},
                    {k: mean(k, "viou") for k in CHAINS})
    row["n"] = len({s.qid for rows in by_chain.values() for s in rows})
    return row


# ---------------------------------------------------------------------------- raw outputs
def when_iou(output: str, gt_window: Interval) -> float:
    """tIoU of a "when" answer (`From <t>s</t>s to <t>e</t>s` or `[s, e]`); 0 if none parses."""
    pred = parse_interval(answer_or_text(output))
    return interval_iou(pred, gt_window) if pred is not None else 0.0


def where_iou(output: str, gt_boxes: list[tuple[float, list[float]]], frame_size: tuple[int, int],
              tolerance: float = 0.5) -> float:
    """m_vIoU of a "where" answer: the mean over the ground-truth (time, normalized box) pairs of
    the best IoU among the boxes the answer cites for that frame — `<obj>…</obj><box>[…]</box>at
    <t>T</t>s` with |T − time| ≤ tolerance; a frame it does not cite scores 0 (as in V-STAR).
    Ground truth is scaled to the model's resized-frame pixels before comparing (V-STAR's
    evaluation defined that denormalization but never called it)."""
    if not gt_boxes:
        return 0.0
    cited = [(c.time, c.boxes) for c in parse_claims(answer_or_text(output)) if c.time is not None]
    total = 0.0
    for t, box in gt_boxes:
        gt: Box = scale_box(box, frame_size)
        near = [b for ct, bs in cited if abs(ct - t) <= tolerance for b in bs]
        total += max((box_iou(b, gt) for b in near), default=0.0)
    return total / len(gt_boxes)
