"""Frame numbering: the key frame's number in red at its bottom-right corner (visioncoach App. C.1,
after NumPro, Wu et al. 2024c: "The key frame index is rendered as a red numeric label at the
bottom-right corner").

    out_HW3 = numpro(frame_HW3, number)     # number: 1-based, as "Frame {i} at {t}s" counts; new array

The number is the sampled frame's 1-based position, the same `i` the prompt text gives that frame,
so the label and the text agree. The font is Pillow's bundled one (ImageFont.load_default(size=),
Pillow >= 10.1, FreeType): offline and identical on every machine.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

NUMPRO_COLOR = (255, 0, 0)      # red, as NumPro and visioncoach App. C.1 render it
FONT_FRAC = 0.125               # font size = H / 8: still legible once the model downscales the frame,
FONT_MIN = 8                    # while two digits cover ~1% of it
STROKE_FRAC = 0.05              # a red outline of 1/20 of the font size (1 px at 15 px, 3 px at 60 px) thickens
                                # the strokes, so the digits survive the downscale (thin ones fade to pink)
MARGIN_FRAC = 0.03              # gap to the right and bottom edges, of min(H, W): the corner, not the border
MARGIN_MIN = 1                  # px


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)     # parsed once per size, not once per frame


def numpro(frame: np.ndarray, number: int) -> np.ndarray:
    """[H, W, 3] uint8 -> a new [H, W, 3] uint8 with `number` in red at the bottom-right corner."""
    H, W = frame.shape[:2]
    size = max(FONT_MIN, round(FONT_FRAC * H))
    margin = max(MARGIN_MIN, round(MARGIN_FRAC * min(H, W)))
    img = Image.fromarray(frame)        # PIL keeps RGB as its own 4-byte pixels: drawing never touches `frame`
    # anchor "rs": the text's right edge and baseline at the point; digits have no descender, so
    # the ink ends `margin` px above the bottom edge.
    ImageDraw.Draw(img).text((W - margin, H - margin), str(number), fill=NUMPRO_COLOR, font=_font(size), anchor="rs",
                             stroke_width=max(1, round(STROKE_FRAC * size)), stroke_fill=NUMPRO_COLOR)
    return np.asarray(img).copy()
