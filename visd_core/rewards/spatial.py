"""Thinking-spatial rewards: do the boxes cited in <think> land on the verified objects?

Each claim (o_m, b_m, t_m) is matched to its nearest key frame t̃_m and kept only when the gate
|t_m − t̃_m| ≤ τ holds — symmetric, so a claim far before or after every key frame earns nothing
(the public code's one-sided `gt − pred < 1.0` let any earlier key frame pass). Then either
- max-IoU (visd eq. 13; visioncoach eq. 13, Open-o3-Video): the claim scores its best IoU with
  any object at t̃_m, averaged over all M claims; or
- object-aware (visioncoach eq. 7–8 = eq. 15): the claim scores only against the objects whose
  names soft-match o_m, averaged over them, and the average runs over the valid claims ℐ
  (gated and matched), so a mismatched name neither earns nor costs reward.
One object's score is `object_iou` under `reward.multi_instance`: "max" (the default) is the
equations' max over the object's ground-truth boxes b* ∈ ℬ*(t̃_m), so one box on one of two
instances scores its IoU; "mean" is the released code's reading of "multi-region overlap", where
every instance must be covered (one of two scores half). With one ground-truth box both are IoU(b_m, b*).
"""
from __future__ import annotations

from dataclasses import dataclass

from visd_core.data.schema import Record
from visd_core.rewards.iou import Box, object_iou, scale_box
from visd_core.rewards.parse import Claim
from visd_core.rewards.temporal import nearest


@dataclass(frozen=True)
class FrameEvidence:
    time: float
    objects: dict[str, list[Box]]                # name -> boxes in the model's resized-frame pixels


def frame_evidence(record: Record, frame_size: tuple[int, int]) -> list[FrameEvidence]:
    """The record's key frames sorted by time, ground-truth boxes scaled into frame_size pixels."""
    frames = [FrameEvidence(k.time, {name: [scale_box(b, frame_size) for b in boxes]
                                     for name, boxes in record.boxes_at(k.idx).items()})
              for k in record.key_frames]
    return sorted(frames, key=lambda f: f.time)


def normalize_name(name: str) -> str:
    return " ".join(name.lower().split())


def soft_match(pred: str, gt: str, normalized: bool = False) -> bool:
    """visioncoach eq. 7's 𝕀_soft: equal, or one name contains the other (case-insensitive).
    An empty name matches nothing (it is a substring of everything). `normalized`: both names
    already went through `normalize_name` (callers matching many pairs do that once)."""
    p, g = (pred, gt) if normalized else (normalize_name(pred), normalize_name(gt))
    return bool(p) and bool(g) and (p in g or g in p)


def gated_frame(claim: Claim, frames: list[FrameEvidence], frame_times: list[float],
                tau: float) -> FrameEvidence | None:
    """The key frame nearest the claim's time if |t_m − t̃_m| ≤ τ, else None (visd eq. 13's ℐ)."""
    if claim.time is None or not frames:
        return None
    f = frames[nearest(frame_times, claim.time)]
    return f if abs(claim.time - f.time) <= tau else None


def max_iou_reward(claims: list[Claim], frames: list[FrameEvidence], tau: float,
                   multi_instance: str = "max") -> float:
    """visd eq. 13 with Z = M (visioncoach eq. 13): mean over claims of 1[gate]·max_o IoU."""
    timed = [c for c in claims if c.time is not None]
    if not timed:
        return 0.0
    frame_times = [f.time for f in frames]
    total = 0.0
    for c in timed:
        f = gated_frame(c, frames, frame_times, tau)
        if f is not None and f.objects:
            total += max(object_iou(c.boxes, gt, multi_instance) for gt in f.objects.values())
    return total / len(timed)


def object_aware_reward(claims: list[Claim], frames: list[FrameEvidence], tau: float,
                        multi_instance: str = "max") -> float:
    """visioncoach eq. 8: (1/|ℐ|) Σ_{m∈ℐ} mean_{o ∈ O_m^match} IoU; 0 when ℐ is empty."""
    frame_times = [f.time for f in frames]
    scores = []
    for c in claims:
        f = gated_frame(c, frames, frame_times, tau)
        if f is None:
            continue
        matched = [gt for name, gt in f.objects.items() if soft_match(c.obj, name)]  # eq. 7
        if matched:
            scores.append(sum(object_iou(c.boxes, gt, multi_instance) for gt in matched) / len(matched))
    return sum(scores) / len(scores) if scores else 0.0



def think_box_reward(think_boxes: list[Box], gt: list[Box], multi_instance: str = "max") -> float:
    """Visual QA (one image, no times to gate): the best IoU of any box cited in <think> with the
    answer's ground-truth box — Open-o3-Video's visual-QA branch, which VisionCoach's code keeps
    under either spatial mode."""
    return object_iou(think_boxes, gt, multi_instance)
