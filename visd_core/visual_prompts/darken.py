"""Darken: dim everything outside the key objects (visioncoach App. C.1, key-object-based visual
prompting: "we darken the regions outside the bounding boxes while preserving the object area").

    out_HW3 = darken(frame_HW3, boxes)      # boxes normalized [x1, y1, x2, y2]; new array

Pixels outside the padded union of the boxes become p * 3/10, rounded half up in integers:
(3p + 5) // 10, so 255 -> 77 and 5 -> 2 exactly (float 255 * 0.3 is 76.49999999999999, which
rounds to 76). Pixels inside are unchanged. A frame without boxes is returned unchanged.
"""
from __future__ import annotations

import numpy as np

from visd_core.data.resize import box_to_pixels

DARKEN_NUM, DARKEN_DEN = 3, 10  # outside pixels keep 0.3 of their value: dim enough to recede, context still visible
# The padding keeps the object's border and a sliver of context bright: annotated boxes are tight,
# and the model's resize (bicubic to a 14 px grid) smears the box edge over a pixel or two.
PAD_FRAC = 0.02                 # of the frame's width (x) and height (y)
PAD_MIN = 2                     # px, so small frames still get a margin


def padded_mask(height: int, width: int, boxes: list[list[float]]) -> np.ndarray:
    """[H, W] bool: the union of the boxes, each grown by the padding and clipped to the frame."""
    pad_x, pad_y = max(PAD_MIN, round(PAD_FRAC * width)), max(PAD_MIN, round(PAD_FRAC * height))
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        x1, y1, x2, y2 = box_to_pixels(box, width, height)    # pixel edges: [x1, x2) x [y1, y2)
        mask[max(0, y1 - pad_y):y2 + pad_y, max(0, x1 - pad_x):x2 + pad_x] = True
    return mask


def darken(frame: np.ndarray, boxes: list[list[float]]) -> np.ndarray:
    """[H, W, 3] uint8 -> a new [H, W, 3] uint8 with everything outside the padded boxes dimmed."""
    out = frame.copy()
    if not boxes:
        return out
    outside = ~padded_mask(frame.shape[0], frame.shape[1], boxes)
    dimmed = (frame[outside].astype(np.uint16) * DARKEN_NUM + DARKEN_DEN // 2) // DARKEN_DEN   # round half up
    out[outside] = dimmed.astype(np.uint8)
    return out
