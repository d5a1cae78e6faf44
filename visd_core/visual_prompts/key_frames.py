"""Which sampled frames are key frames, and whose boxes they carry (visioncoach §3.2: the prompt is
applied "to the key frames of x_i").

    shown = key_frame_boxes(video.times, record)    # {sampled frame index: [normalized boxes]}

A record's key frames are times in the full video; the model sees only the sampled frames. Each key
frame goes to the sampled frame nearest in time. One farther than half the median sampling interval
from every sampled frame fell between samples (or outside the sampled span): prompting its nearest
neighbour would mark an object where it was not, so it is not shown. Two key frames that land on
the same sampled frame merge their boxes there.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visd_core.data.schema import Record

TIME_SLACK = 1e-6       # seconds: decoded pts and the record's one-decimal times differ by float noise


def match_tolerance(frame_times: Sequence[float]) -> float:
    """Half the median interval between sampled frames: a key frame within it belongs to its nearest
    sampled frame. The median, not the mean, so one long gap (a dropped frame) does not widen it.
    A single sampled frame has no interval and stands for the whole clip (infinite tolerance)."""
    if len(frame_times) < 2:
        return float("inf")
    return float(np.median(np.diff(np.asarray(frame_times, dtype=np.float64)))) / 2


def key_frame_boxes(frame_times: Sequence[float], record: Record) -> dict[int, list[list[float]]]:
    """{sampled frame index: the normalized [x1, y1, x2, y2] boxes of every record key frame shown on
    it}, in frame order. A key frame without boxes is still listed (with []): numpro and api_prompt
    mark it; darken and circle leave it unchanged."""
    if len(frame_times) == 0:
        raise ValueError("no sampled frames to put key frames on")
    times = np.asarray(frame_times, dtype=np.float64)
    tol = match_tolerance(frame_times) + TIME_SLACK
    shown: dict[int, list[list[float]]] = {}
    for kf in record.key_frames:
        dist = np.abs(times - kf.time)
        i = int(np.argmin(dist))            # a key frame exactly between two samples goes to the earlier
        if dist[i] > tol:
            continue
        boxes = shown.setdefault(i, [])
        for obj_boxes in record.boxes_at(kf.idx).values():
            boxes.extend(list(b) for b in obj_boxes)
    return dict(sorted(shown.items()))
