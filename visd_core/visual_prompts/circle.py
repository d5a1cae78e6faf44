"""Red circle: an ellipse around each key object (visioncoach App. C.1: "a circle centered at the
bounding box center with a radius covering the object region", after Shtedritski et al. 2023).

    out_HW3 = circle(frame_HW3, boxes)      # boxes normalized [x1, y1, x2, y2]; new array

The ellipse's semi-axes are the box's half-sizes times √2, the smallest axis-aligned ellipse of the
box's aspect that passes through its corners, so it covers the whole box. The line is drawn just
outside that ellipse (its inner edge on it), so it never paints over the object itself.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

CIRCLE_COLOR = (255, 0, 0)          # red, as in "What does CLIP know about a red circle?"
RADIUS_SCALE = math.sqrt(2)         # semi-axes = half-size * √2: the ellipse through the box's corners
WIDTH_FRAC = 0.015                  # line width as a fraction of min(H, W): ~2 px at 120 px, ~7 px at 480 px,
WIDTH_MIN = 2                       # so it survives the model's downscale (a 1 px line blurs to pink)


def line_width(height: int, width: int) -> int:
    return max(WIDTH_MIN, round(WIDTH_FRAC * min(height, width)))


def circle(frame: np.ndarray, boxes: list[list[float]]) -> np.ndarray:
    """[H, W, 3] uint8 -> a new [H, W, 3] uint8 with a red ellipse around each box."""
    if not boxes:
        return frame.copy()
    H, W = frame.shape[:2]
    w = line_width(H, W)
    img = Image.fromarray(frame)        # PIL keeps RGB as its own 4-byte pixels: drawing never touches `frame`
    draw = ImageDraw.Draw(img)
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2 * W, (y1 + y2) / 2 * H
        rx, ry = (x2 - x1) / 2 * W * RADIUS_SCALE, (y2 - y1) / 2 * H * RADIUS_SCALE
        # PIL draws the width inward from the bounding box: grow it by w so the line's inner edge
        # lies on the circumscribing ellipse and the line sits outside the object.
        draw.ellipse([cx - rx - w, cy - ry - w, cx + rx + w, cy + ry + w], outline=CIRCLE_COLOR, width=w)
    return np.asarray(img).copy()
