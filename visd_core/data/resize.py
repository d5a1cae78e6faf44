"""Qwen2.5-VL frame geometry: the pixel budget, the resized frame size, visual tokens per frame,
and ground-truth boxes in the resized frame's pixels.

Pure Python (no torch), so the synthetic-data generator and the reward code can share it cheaply.
The numbers are Qwen2.5-VL's: 14-pixel ViT patches, 2x2 patches merged into one LLM token, so both
sides of a resized frame are multiples of 28.
"""
from __future__ import annotations

import math

PATCH_SIZE = 14             # ViT patch side in pixels
MERGE_SIZE = 2              # 2x2 patches become one visual token for the LLM
TEMPORAL_PATCH_SIZE = 2     # the ViT's patches span 2 frames; a still image is repeated to 2
FACTOR = PATCH_SIZE * MERGE_SIZE            # 28: both resized sides are multiples of this
MIN_PIXELS = 56 * 56                        # transformers' Qwen2VLImageProcessor default
PAPER_MAX_PIXELS = 401_408                  # = 512 * 28 * 28, the training pixel budget (visd Table 8)


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = PAPER_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) of the resized frame: sides multiples of `factor`, area within
    [min_pixels, max_pixels], aspect ratio kept as closely as possible.

    Same rules and rounding as transformers' `smart_resize` (qwen2_vl/image_processing_qwen2_vl.py),
    which tests/data/test_video.py checks on many sizes; returns (height, width) like it does.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of a {width}x{height} frame exceeds 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:      # shrink to fit the budget, flooring to the factor
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:    # grow to the floor, ceiling to the factor
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resized_size(width: int, height: int, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = PAPER_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of the frame the model sees, for an original frame of (width, height)."""
    h, w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    return w, h


def tokens_per_frame(width: int, height: int, min_pixels: int = MIN_PIXELS,
                     max_pixels: int = PAPER_MAX_PIXELS) -> int:
    """Merged visual tokens of one frame given as its own image: grid_h * grid_w / 4."""
    w, h = resized_size(width, height, min_pixels, max_pixels)
    return (h // PATCH_SIZE) * (w // PATCH_SIZE) // (MERGE_SIZE * MERGE_SIZE)


def box_to_pixels(box: list[float], width: int, height: int) -> list[int]:
    """A normalized [x1, y1, x2, y2] box in [0, 1] as integer pixels of a width x height frame
    (DESIGN.md: boxes in <box> are integer pixels of the resized frame the model saw).
    Rounds half up and clamps to the frame."""
    x1, y1, x2, y2 = box
    if not (0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0):
        raise ValueError(f"box {list(box)} is not normalized to [0, 1] with x1<=x2, y1<=y2")
    return [min(width, math.floor(x1 * width + 0.5)), min(height, math.floor(y1 * height + 0.5)),
            min(width, math.floor(x2 * width + 0.5)), min(height, math.floor(y2 * height + 0.5))]
