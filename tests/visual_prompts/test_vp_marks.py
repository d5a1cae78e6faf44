"""darken, circle and numpro on frames with known boxes: exact pixels, key frames only.

Frames are 6 samples 1 s apart; key frame idx 0 at 2.0 s (sampled frame 2) with one box, idx 1 at
4.1 s (sampled frame 4) with two boxes. Tolerances: darken and circle are exact (0 levels); numpro's
label is antialiased, so its test checks where pixels changed and that they moved toward red.
"""
import math

import numpy as np
import pytest

from tests.visual_prompts.scenes import noise_frames, record_with
from visd_core.visual_prompts import HINTS, KINDS, apply_visual_prompt
from visd_core.visual_prompts.circle import line_width
from visd_core.visual_prompts.darken import PAD_FRAC, PAD_MIN
from visd_core.visual_prompts.numpro import numpro

TIMES = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
BOX_A = [0.30, 0.25, 0.55, 0.60]
BOX_B, BOX_C = [0.05, 0.05, 0.20, 0.30], [0.70, 0.55, 0.90, 0.80]
RECORD = record_with([(2.0, 0), (4.1, 1)], {0: {"red square": [BOX_A]}, 1: {"cup": [BOX_B], "ball": [BOX_C]}})
KEY = {2: [BOX_A], 4: [BOX_B, BOX_C]}
SHAPES = [(120, 160), (97, 131), (240, 320)]        # the synthetic size, odd sizes, a larger one
RED = np.array([255, 0, 0], dtype=np.uint8)


def pixel_edges(box, H, W):
    """Box edges in pixels, rounded half up (resize.box_to_pixels' convention), recomputed here."""
    return [math.floor(box[0] * W + 0.5), math.floor(box[1] * H + 0.5),
            math.floor(box[2] * W + 0.5), math.floor(box[3] * H + 0.5)]


def padded_inside(boxes, H, W):
    pad_x, pad_y = max(PAD_MIN, round(PAD_FRAC * W)), max(PAD_MIN, round(PAD_FRAC * H))
    assert pad_x >= 2 and pad_y >= 2
    m = np.zeros((H, W), dtype=bool)
    for b in boxes:
        x1, y1, x2, y2 = pixel_edges(b, H, W)
        m[max(0, y1 - pad_y):y2 + pad_y, max(0, x1 - pad_x):x2 + pad_x] = True
    return m


def assert_only_key_frames_changed(frames, out, key):
    for t in range(len(frames)):
        if t not in key:
            assert np.array_equal(out[t], frames[t]), f"non-key frame {t} changed"


# -- darken ------------------------------------------------------------------------------------

@pytest.mark.parametrize("H, W", SHAPES)
def test_darken_scales_outside_the_padded_boxes_exactly(H, W):
    frames = noise_frames(len(TIMES), H, W, seed=H)
    before = frames.copy()
    out = apply_visual_prompt(frames, TIMES, RECORD, "darken")
    assert out.shape == frames.shape and out.dtype == np.uint8 and out is not frames
    assert np.array_equal(frames, before), "input mutated"
    assert_only_key_frames_changed(frames, out, KEY)
    for t, boxes in KEY.items():
        inside = padded_inside(boxes, H, W)
        assert np.array_equal(out[t][inside], frames[t][inside])
        expected = (frames[t][~inside].astype(int) * 3 + 5) // 10        # p * 0.3, rounded half up
        assert np.array_equal(out[t][~inside], expected)


def test_darken_rounding_is_half_up_on_the_exact_ratio():
    levels = np.array([0, 1, 2, 5, 15, 25, 128, 254, 255], dtype=np.uint8)   # 5 -> 1.5 -> 2, 255 -> 76.5 -> 77
    frames = np.zeros((len(TIMES), 40, 40, 3), dtype=np.uint8)
    frames[2, 0, :len(levels)] = levels[:, None]          # top row: far outside the box
    out = apply_visual_prompt(frames, TIMES, RECORD, "darken")
    assert out[2, 0, :len(levels), 0].tolist() == [0, 0, 1, 2, 5, 8, 38, 76, 77]


def test_darken_leaves_a_key_frame_without_boxes_unchanged():
    frames = noise_frames(len(TIMES), 60, 80)
    rec = record_with([(2.0, 0)], {})
    assert np.array_equal(apply_visual_prompt(frames, TIMES, rec, "darken"), frames)


# -- circle ------------------------------------------------------------------------------------

@pytest.mark.parametrize("H, W", SHAPES)
def test_circle_draws_red_around_each_box_and_nothing_inside(H, W):
    frames = noise_frames(len(TIMES), H, W, seed=W, high=200)    # no pure red in the background
    before = frames.copy()
    out = apply_visual_prompt(frames, TIMES, RECORD, "circle")
    assert np.array_equal(frames, before), "input mutated"
    assert_only_key_frames_changed(frames, out, KEY)
    w = line_width(H, W)
    assert w >= 1
    for t, boxes in KEY.items():
        changed = (out[t] != frames[t]).any(axis=-1)
        assert (out[t][changed] == RED).all(), "a changed pixel is not pure red (PIL draws without antialiasing)"
        for x1, y1, x2, y2 in boxes:
            cx, cy = (x1 + x2) / 2 * W, (y1 + y2) / 2 * H
            rx, ry = (x2 - x1) / 2 * W * math.sqrt(2), (y2 - y1) / 2 * H * math.sqrt(2)
            hits = 0
            for k in range(24):     # points on the middle of the ring, within 1 px
                a = 2 * math.pi * k / 24
                x, y = int(cx + (rx + w / 2) * math.cos(a)), int(cy + (ry + w / 2) * math.sin(a))
                if 1 <= x < W - 1 and 1 <= y < H - 1:
                    assert changed[y - 1:y + 2, x - 1:x + 2].any(), f"no red near ({x}, {y}) on the ellipse"
                    hits += 1
            assert hits >= 6
            px1, py1, px2, py2 = pixel_edges([x1, y1, x2, y2], H, W)
            qx, qy = (px2 - px1) // 4, (py2 - py1) // 4         # the box's centre half
            assert not changed[py1 + qy:py2 - qy, px1 + qx:px2 - qx].any(), "red drawn inside the box"


# -- numpro ------------------------------------------------------------------------------------

@pytest.mark.parametrize("H, W", SHAPES)
def test_numpro_labels_only_the_bottom_right_corner_of_key_frames(H, W):
    frames = noise_frames(len(TIMES), H, W, seed=3, high=160)
    before = frames.copy()
    out = apply_visual_prompt(frames, TIMES, RECORD, "numpro")
    assert np.array_equal(frames, before), "input mutated"
    assert_only_key_frames_changed(frames, out, KEY)
    for t in KEY:
        changed = (out[t] != frames[t]).any(axis=-1)
        ys, xs = np.nonzero(changed)
        assert len(ys) >= 10, "no label drawn"
        # the corner region: the right 40% and the bottom 30% of the frame
        assert xs.min() >= 0.6 * W and ys.min() >= 0.7 * H, (xs.min(), ys.min())
        o, f = out[t][changed].astype(int), frames[t][changed].astype(int)
        assert (o[:, 0] >= f[:, 0]).all() and (o[:, 1:] <= f[:, 1:]).all(), "label pixels not blended toward red"
        assert (out[t][changed] == RED).all(axis=-1).sum() >= 5, "no fully red label pixel"
        assert np.array_equal(out[t], numpro(frames[t], t + 1))   # the 1-based sampled frame number


def test_numpro_numbers_render_differently():
    frame = np.full((120, 160, 3), 40, dtype=np.uint8)
    labels = [numpro(frame, n) for n in (1, 2, 7, 12)]
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            assert not np.array_equal(labels[i], labels[j])


# -- all kinds ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["circle", "darken", "numpro", "raw"])
def test_no_key_frame_shown_changes_nothing(kind):
    frames = noise_frames(len(TIMES), 50, 70)
    rec = record_with([(30.0, 0)], {0: {"cup": [BOX_A]}})       # far past the sampled span
    out = apply_visual_prompt(frames, TIMES, rec, kind)
    assert np.array_equal(out, frames) and out is not frames


def test_raw_is_an_unchanged_copy():
    frames = noise_frames(len(TIMES), 50, 70)
    out = apply_visual_prompt(frames, TIMES, RECORD, "raw")
    assert np.array_equal(out, frames) and not np.shares_memory(out, frames)


@pytest.mark.parametrize("bad", ["red_circle", "", "Darken"])
def test_unknown_kind_lists_the_valid_ones(bad):
    with pytest.raises(ValueError, match="valid: api_prompt, circle, darken, numpro, raw"):
        apply_visual_prompt(noise_frames(len(TIMES), 8, 8), TIMES, RECORD, bad)


def test_frames_and_times_must_agree():
    with pytest.raises(ValueError, match="frame times"):
        apply_visual_prompt(noise_frames(3, 8, 8), TIMES, RECORD, "darken")
    with pytest.raises(ValueError, match="uint8"):
        apply_visual_prompt(noise_frames(6, 8, 8).astype(np.float32), TIMES, RECORD, "darken")


def test_the_label_set_and_its_hints():
    assert KINDS == ("api_prompt", "circle", "darken", "numpro", "raw")     # App. C.4's label set
    assert sorted(HINTS) == list(KINDS) and HINTS["raw"] == ""
