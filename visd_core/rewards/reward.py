"""The verifier reward of one rollout group: R = Σ_{k∈𝒦(x)} α_k r_k (visd eq. 10), with the
components, the total and a structured `Diagnosis` per completion.

    results = score_group(record, completions, frame_size=(w, h), progress=p, cfg=cfg.reward)
    rewards = [r.total for r in results]                 # -> group advantages (visd eq. 14)

𝒦(x), the components that apply to each task (a component whose supervision the record lacks is
masked out as well, visd §C.1):

    task            ans          fmt  ans_tmp  ans_spa  thk_tmp          thk_spa
    temporal_qa     -            ✓    ✓ tIoU   -        ✓ eq. 11         -
    temporal_mcq    ✓ letter     ✓    ✓ tIoU   -        ✓ eq. 11         -
    visual_qa       -            ✓    -        ✓ IoU    -                ✓ think boxes
    st_freeform     ✓ ROUGE      ✓    -        -        ✓ eq. 12 (/11)   ✓ eq. 13 / vc eq. 8
    video_mcq       ✓ letter     ✓    -        -        -                -
    video_freeform  ✓ ROUGE      ✓    -        -        -                -

This is Open-o3-Video's assignment, which VISD and VisionCoach keep: temporal answers are scored
by their interval (ans_tmp), a visual answer by its box (ans_spa); thinking-temporal uses the
verified window (eq. 11) for temporal tasks and key frames (eq. 12; a window as well gives
visioncoach eq. 6) for spatio-temporal QA, which falls back to eq. 11 when it has only a window.
Thinking-spatial follows `cfg.spatial` (visd eq. 13 | visioncoach eq. 8) for spatio-temporal QA;
visual QA's single image has no times to gate, so it scores the best think box in both modes.
Wherever a box meets an object with several ground-truth boxes (instances) — both spatial modes,
visual QA's think boxes and its answer box — `cfg.multi_instance` scores it: "max" over the
object's boxes as eq. 13 / vc eq. 8 write it, or "mean" over them as the released code does.
"""
from __future__ import annotations

from dataclasses import dataclass

from visd_core.config import Reward
from visd_core.data.schema import MCQ_TASKS, TASKS, TEMPORAL_TASKS, Record
from visd_core.rewards import answer, spatial, temporal
from visd_core.rewards.diagnosis import ISSUE_KINDS, Diagnosis
from visd_core.rewards.format import FULL, format_reward
from visd_core.rewards.iou import Box, box_iou, scale_box
from visd_core.rewards.parse import Completion, parse_completion

COMPONENTS = ("ans", "fmt", "ans_tmp", "ans_spa", "thk_tmp", "thk_spa")
TASK_COMPONENTS = {
    "temporal_qa": ("fmt", "ans_tmp", "thk_tmp"),
    "temporal_mcq": ("ans", "fmt", "ans_tmp", "thk_tmp"),
    "visual_qa": ("fmt", "ans_spa", "thk_spa"),
    "st_freeform": ("ans", "fmt", "thk_tmp", "thk_spa"),
    "video_mcq": ("ans", "fmt"),
    "video_freeform": ("ans", "fmt"),
}
SPATIAL_MODES = ("max_iou", "object_aware")
MULTI_INSTANCE = ("max", "mean")
WRONG_BELOW = 0.5        # a continuous score under this counts as wrong in the diagnosis


@dataclass
class RewardResult:
    total: float                                 # Σ α_k r_k over the applicable components
    components: dict[str, float | None]          # every component in [0, 1]; None = masked out
    diagnosis: Diagnosis


@dataclass
class _Evidence:
    """What a group's completions are scored against, computed once per group."""
    record: Record
    components: tuple[str, ...]
    frames: list[spatial.FrameEvidence]          # key frames by time, boxes in resized pixels
    key_times: list[float]
    answer_boxes: list[Box]                      # visual QA's verified box(es), resized pixels
    gt_objects: list[str]


def _answer_boxes(record: Record, frame_size: tuple[int, int]) -> list[Box]:
    """Visual QA: the boxes of the object named by the answer; all boxes if it names none."""
    named = [b for k in record.key_frames for b in record.boxes_at(k.idx).get(record.answer, [])]
    everything = [b for k in record.key_frames for bs in record.boxes_at(k.idx).values() for b in bs]
    return [scale_box(b, frame_size) for b in (named or everything)]


def _evidence(record: Record, frame_size: tuple[int, int]) -> _Evidence:
    frames = spatial.frame_evidence(record, frame_size)
    boxes = _answer_boxes(record, frame_size) if record.task == "visual_qa" else []
    has = {"ans": record.task in MCQ_TASKS or bool(record.answer.strip()),
           "fmt": True,
           "ans_tmp": record.window is not None,
           "ans_spa": bool(boxes),
           "thk_tmp": record.window is not None or (record.task == "st_freeform" and bool(frames)),
           "thk_spa": bool(boxes) if record.task == "visual_qa" else any(f.objects for f in frames)}
    names = list(dict.fromkeys(n for f in frames for n in f.objects))
    if record.task == "visual_qa":
        names = [record.answer] if record.answer.strip() else []
    return _Evidence(record=record, components=tuple(k for k in TASK_COMPONENTS[record.task] if has[k]),
                     frames=frames, key_times=[f.time for f in frames], answer_boxes=boxes, gt_objects=names)


# ---------------------------------------------------------------------------- components
# Each takes (evidence, parsed completion, σ, config); "fmt" is computed first for everything.
def _answer(ev: _Evidence, c: Completion, sigma: float, cfg: Reward) -> float:
    if ev.record.task in MCQ_TASKS:
        return answer.option_reward(c, ev.record.answer)
    return answer.freeform_reward(c, ev.record.answer)


def _answer_temporal(ev: _Evidence, c: Completion, sigma: float, cfg: Reward) -> float:
    return answer.interval_reward(c, ev.record.window)


def _answer_spatial(ev: _Evidence, c: Completion, sigma: float, cfg: Reward) -> float:
    return answer.box_reward(c, ev.answer_boxes, cfg.multi_instance)


def _thinking_temporal(ev: _Evidence, c: Completion, sigma: float, cfg: Reward) -> float:
    r = ev.record
    if r.task in TEMPORAL_TASKS or not ev.key_times:
        return temporal.segment_inclusion(c.think_times, r.window)                       # visd eq. 11
    windows = (r.window,) if r.window is not None else ()
    return temporal.keyframe_proximity(c.think_times, ev.key_times, sigma, windows)     # visd eq. 12 / vc eq. 6


def _thinking_spatial(ev: _Evidence, c: Completion, sigma: float, cfg: Reward) -> float:
    if ev.record.task == "visual_qa":
        return spatial.think_box_reward(c.think_boxes, ev.answer_boxes, cfg.multi_instance)
    if cfg.spatial == "object_aware":
        return spatial.object_aware_reward(c.claims, ev.frames, cfg.tau, cfg.multi_instance)   # vc eq. 8
    return spatial.max_iou_reward(c.claims, ev.frames, cfg.tau, cfg.multi_instance)            # visd eq. 13


_SCORERS = {"ans": _answer, "ans_tmp": _answer_temporal, "ans_spa": _answer_spatial,
            "thk_tmp": _thinking_temporal, "thk_spa": _thinking_spatial}


# ---------------------------------------------------------------------------- diagnosis
def _consistency(ev: _Evidence, c: Completion, tau: float) -> tuple[bool | None, str | None]:
    """Does <think> support the final answer? None when there is nothing to compare."""
    if ev.record.task in TEMPORAL_TASKS and c.answer_interval is not None and c.think_times:
        s, e = c.answer_interval
        if any(s - tau <= t <= e + tau for t in c.think_times):
            return True, None
        cited = ", ".join(f"{t:g}s" for t in c.think_times[:6])
        return False, f"the reasoning cites {cited} but the answer is {s:g}-{e:g}s"
    if ev.record.task == "visual_qa" and c.answer_boxes and c.think_boxes:
        answered = c.answer_boxes[0]             # the answer names one box (and a long list must stay linear)
        if any(box_iou(t, answered) >= WRONG_BELOW for t in c.think_boxes):
            return True, None
        return False, "no box cited in the reasoning overlaps the answered box"
    return None, None


def _objects(ev: _Evidence, c: Completion) -> tuple[list[str], list[str], list[str]]:
    """(claimed, missing, unknown) object names, soft-matched as in visioncoach eq. 7."""
    if ev.record.task == "visual_qa":
        claimed = list(dict.fromkeys(c.answer_objects))
    elif "thk_spa" in ev.components:
        claimed = list(dict.fromkeys(cl.obj for cl in c.claims))
    else:
        return [], [], []
    pred = {p: spatial.normalize_name(p) for p in claimed}
    gt = {g: spatial.normalize_name(g) for g in ev.gt_objects}
    missing = [g for g, gn in gt.items() if not any(spatial.soft_match(pn, gn, True) for pn in pred.values())]
    unknown = [p for p, pn in pred.items() if not any(spatial.soft_match(pn, gn, True) for gn in gt.values())]
    return claimed, missing, unknown


def _diagnose(ev: _Evidence, c: Completion, comps: dict[str, float | None], fmt_issues: list[str],
              truncated: bool, tau: float) -> Diagnosis:
    task = ev.record.task
    main = "ans_tmp" if task == "temporal_qa" else "ans_spa" if task == "visual_qa" else "ans"
    score = comps[main]                          # None: the record cannot verify the answer
    correct = None if score is None else score == 1.0 if task in MCQ_TASKS else score >= WRONG_BELOW
    consistent, note = _consistency(ev, c, tau)
    claimed, missing, unknown = _objects(ev, c)
    d = Diagnosis(task=task, has_answer=c.answer is not None, truncated=truncated or c.truncated,
                  format_ok=comps["fmt"] == FULL, format_issues=fmt_issues,
                  pred_answer=c.answer.strip() if c.answer is not None else None,
                  answer_score=score or 0.0, answer_correct=correct,
                  reasoning_consistent=consistent, consistency_note=note,
                  claimed_times=list(c.think_times), gt_window=ev.record.window, key_times=list(ev.key_times),
                  time_score=comps["thk_tmp"], claimed_objects=claimed, gt_objects=list(ev.gt_objects),
                  missing_objects=missing, unknown_objects=unknown, box_score=comps["thk_spa"])
    flags = {"format": not d.format_ok,
             "answer": correct is False,
             "time": d.time_score is not None and d.time_score < WRONG_BELOW,
             # naming a wrong object, or none of the verified ones; leaving some out is not an error
             "object": bool(unknown) or (bool(ev.gt_objects) and len(missing) == len(ev.gt_objects)),
             "box": d.box_score is not None and d.box_score < WRONG_BELOW}
    d.issues = [k for k in ISSUE_KINDS if flags[k]]
    return d


# ---------------------------------------------------------------------------- the group
def score_group(record: Record, completions: list[str], frame_size: tuple[int, int], progress: float,
                cfg: Reward, truncated: list[bool] | None = None) -> list[RewardResult]:
    """Score G completions of one prompt. `frame_size` is the (width, height) of the resized frame
    the model saw (its <box> pixel space); `progress` in [0, 1] drives σ (`temporal.sigma_at`);
    `truncated[i]` says generation i hit the token limit (the text alone cannot always tell)."""
    if record.task not in TASKS:
        raise ValueError(f"unknown task {record.task!r} (valid: {', '.join(TASKS)})")
    if cfg.spatial not in SPATIAL_MODES:
        raise ValueError(f"reward.spatial = {cfg.spatial!r} is not one of {', '.join(SPATIAL_MODES)}")
    if cfg.multi_instance not in MULTI_INSTANCE:
        raise ValueError(f"reward.multi_instance = {cfg.multi_instance!r} is not one of {', '.join(MULTI_INSTANCE)}")
    if (len(frame_size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                        for v in frame_size)):
        raise ValueError(f"frame_size must be (width, height) positive integers, got {frame_size!r}")
    if truncated is not None and len(truncated) != len(completions):
        raise ValueError(f"truncated has {len(truncated)} flags for {len(completions)} completions")
    sigma = temporal.sigma_at(progress, cfg)
    ev = _evidence(record, frame_size)
    weights = {k: getattr(cfg, f"w_{k}") for k in COMPONENTS}
    results = []
    for i, text in enumerate(completions):
        c = parse_completion(text)
        fmt, fmt_issues = format_reward(c, record.task)
        comps: dict[str, float | None] = dict.fromkeys(COMPONENTS)
        for k in ev.components:
            comps[k] = fmt if k == "fmt" else _SCORERS[k](ev, c, sigma, cfg)
        total = sum(weights[k] * v for k, v in comps.items() if v is not None)           # visd eq. 10
        diag = _diagnose(ev, c, comps, fmt_issues, bool(truncated and truncated[i]), cfg.tau)
        results.append(RewardResult(total=total, components=comps, diagnosis=diag))
    return results
