"""The hidden answer and grounding evidence as both judges state it (visd Appendix G.2 fields).

Times are seconds written with one decimal (two when needed); boxes are integer pixels of the
frame the student saw when `frame_size` is known (the student's own box space, DESIGN.md),
otherwise normalized [0, 1] with three decimals.
"""
from __future__ import annotations

import re

from visd_core.judge.base import JudgeRequest


def fmt_sec(t: float) -> str:
    return f"{t:.1f}" if round(t, 1) == round(t, 2) else f"{t:.2f}"


def fmt_window(w: tuple[float, float]) -> str:
    return f"{fmt_sec(w[0])}\u2013{fmt_sec(w[1])}s"      # en dash: "3.2–5.0s"


def interval_answer(w: tuple[float, float]) -> str:
    """The temporal answer in the students' own format (DESIGN.md answer conventions)."""
    return f"From <t>{fmt_sec(w[0])}</t>s to <t>{fmt_sec(w[1])}</t>s"


def scale_box(box: list[float], frame_size: tuple[int, int] | None) -> list:
    if frame_size is None:
        return [round(v, 3) for v in box]
    w, h = frame_size
    return [round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)]


def keyframe_evidence(req: JudgeRequest) -> list[dict] | None:
    """G.2's "Keyframe object evidence": [{time, objects: {name: [boxes]}}], or None when absent."""
    if not req.key_frames:
        return None
    return [{"time": round(t, 2),
             "objects": {name: [scale_box(b, req.frame_size) for b in boxes] for name, boxes in objs.items()}}
            for t, objs in req.key_frames]


def object_location(req: JudgeRequest, name: str) -> tuple[float, list] | None:
    """(time, first box) of the earliest key frame showing `name`, or None if the evidence lacks it."""
    for t, objs in req.key_frames:
        if objs.get(name):
            return t, scale_box(objs[name][0], req.frame_size)
    return None


_LETTER = re.compile(r"^[(\[]?([A-Z])[.)\]:]?(\s|$)")


def option_label(options: list[str], letter: str) -> str:
    """`B ("the dog jumps")` from an options list written `B. the dog jumps` or `the dog jumps`."""
    i = ord(letter) - ord("A")
    if not 0 <= i < len(options):
        return letter
    text = options[i].strip()
    m = _LETTER.match(text)
    if m and m.group(1) == letter:
        text = text[m.end():].strip()
    return f'{letter} ("{text}")' if text else letter


def standard_answer(req: JudgeRequest) -> str:
    """The verified answer in the form the task's student answer takes (G.2 "Standard answer")."""
    if req.task == "temporal_qa" and req.window is not None:
        return interval_answer(req.window)
    if req.task == "temporal_mcq":
        # Two required parts, one per line: the option, then the window.
        option = option_label(req.options, req.answer)
        return option if req.window is None else f"{option}\n{interval_answer(req.window)}"
    if req.task == "video_mcq":
        return option_label(req.options, req.answer)
    if req.task == "visual_qa":
        loc = object_location(req, req.answer)
        return f"<obj>{req.answer}</obj>" + (f"<box>{loc[1]}</box>" if loc else "")
    return req.answer
