"""The five visual prompt kinds, their textual hints, and one entry point (visioncoach Alg. 1 line 9:
(x', q') = (VP(x; v), q ⊕ hint(v))).

    frames2 = apply_visual_prompt(video.frames, video.times, record, "darken")        # x' = VP(x; v)
    record2 = with_hint(record, "darken")                                            # q' = q ⊕ hint(v)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from visd_core.config import VISUAL_PROMPT_KINDS as KINDS     # App. C.4's label set; the config validates with it
from visd_core.data.schema import Record
from visd_core.visual_prompts.api_prompt import ClipRelevance, api_prompt
from visd_core.visual_prompts.circle import circle
from visd_core.visual_prompts.darken import darken
from visd_core.visual_prompts.key_frames import key_frame_boxes
from visd_core.visual_prompts.numpro import numpro


# hint(v): one sentence appended to the question, telling the model what the marks mean, so it reads
# a red circle as a pointer, not as part of the scene. `raw` changes nothing and says nothing.
HINTS = {
    "api_prompt": "In the key frames, regions less relevant to the question are shaded darker.",
    "circle": "Red circles mark the key objects in the key frames.",
    "darken": "Regions outside the key objects are darkened in the key frames.",
    "numpro": "Each key frame shows its frame number in red at its bottom-right corner.",
    "raw": "",
}
assert tuple(sorted(HINTS)) == KINDS


NEEDS_CLIP = ("visual prompt 'api_prompt' needs a CLIP model: set visioncoach.clip_path to a local CLIP "
              "directory (e.g. CLIP-ViT-L-14-336 saved with save_pretrained)")


def check_kind(kind: str) -> None:
    """ValueError with a one-line reason when `kind` is not one of KINDS."""
    if kind not in KINDS:
        raise ValueError(f"unknown visual prompt {kind!r} (valid: {', '.join(KINDS)})")


def with_hint(record: Record, kind: str) -> Record:
    """The record with q' = q ⊕ hint(kind): the hint follows the question after one space."""
    check_kind(kind)
    hint = HINTS[kind]
    return replace(record, question=f"{record.question.rstrip()} {hint}") if hint else replace(record)


def apply_visual_prompt(frames: np.ndarray, frame_times: Sequence[float], record: Record, kind: str, *,
                        clip: ClipRelevance | None = None) -> np.ndarray:
    """x' = VP(x; kind) on the record's key frames: [T, H, W, 3] uint8 frames at the ORIGINAL video
    resolution (so normalized boxes map exactly to pixels) -> a new array of the same shape and dtype.
    Frames that are not key frames (key_frames.key_frame_boxes) are copied unchanged."""
    check_kind(kind)
    if kind == "api_prompt" and clip is None:
        raise ValueError(NEEDS_CLIP)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    if len(frame_times) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(frame_times)} frame times")
    out = frames.copy()
    if kind == "raw":
        return out
    shown = key_frame_boxes(frame_times, record)
    if kind == "api_prompt" and shown:
        keys = list(shown)
        rel_KHW = clip.relevance(frames[keys], record.question)     # one CLIP forward for all key frames
        for t, rel in zip(keys, rel_KHW):
            out[t] = api_prompt(frames[t], rel)
        return out
    for t, boxes in shown.items():
        if kind == "darken":
            out[t] = darken(frames[t], boxes)
        elif kind == "circle":
            out[t] = circle(frames[t], boxes)
        elif kind == "numpro":
            out[t] = numpro(frames[t], t + 1)       # 1-based, as the prompt's "Frame {i} at {t}s"
    return out
