"""Charades-STA temporal grounding: R@m, the percentage of queries whose predicted segment has
tIoU ≥ m with the ground truth, for m = 0.3, 0.5, 0.7, and mIoU, the mean tIoU (visioncoach
Appendix A). A missing, unparseable or inverted prediction scores IoU 0 and is counted.
"""
from __future__ import annotations

from collections.abc import Sequence

from visd_core.rewards.iou import Interval
from visd_core.rewards.parse import answer_or_text, parse_interval

THRESHOLDS = (0.3, 0.5, 0.7)


def segment_of_output(output: str) -> Interval | None:
    """The interval a raw model output answers, or None if it names none or names it backwards."""
    seg = parse_interval(answer_or_text(output))
    return seg if seg is not None and seg[0] <= seg[1] else None


def summarize(ious: Sequence[float], unparsed: int = 0) -> dict[str, float]:
    """{"R@0.3", "R@0.5", "R@0.7", "mIoU"} in percent, plus n and the unparsed count."""
    if not ious:
        raise ValueError("no queries to score")
    n = len(ious)
    row: dict[str, float] = {f"R@{m}": 100 * sum(iou >= m for iou in ious) / n for m in THRESHOLDS}
    row["mIoU"] = 100 * sum(ious) / n
    row["n"] = n
    row["unparsed"] = unparsed
    return row
