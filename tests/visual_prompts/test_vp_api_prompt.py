"""api_prompt through a tiny random CLIP saved to disk and loaded by ClipRelevance.from_pretrained.

A random CLIP's map is noise, so these tests check the plumbing, not the relevance: shape and range,
key frames only, determinism, dependence on the question, the blend's formula, the no-CLIP error.
"""
import numpy as np
import pytest

from tests.visual_prompts.scenes import noise_frames, record_with
from visd_core.visual_prompts import ClipRelevance, apply_visual_prompt
from visd_core.visual_prompts.api_prompt import api_prompt

TIMES = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
RECORD = record_with([(1.0, 0), (4.0, 1)], {0: {"cup": [[0.2, 0.2, 0.5, 0.6]]}})   # key frame 4 has no boxes
KEY = (1, 4)


@pytest.fixture(scope="module")
def clip(clip_dir):
    return ClipRelevance.from_pretrained(clip_dir)


@pytest.mark.parametrize("H, W", [(120, 160), (97, 131)])
def test_relevance_is_one_map_per_frame_in_unit_range(clip, H, W):
    rel = clip.relevance(noise_frames(3, H, W), "where is the cup?")
    assert rel.shape == (3, H, W) and rel.dtype == np.float32
    assert rel.min() >= 0.0 and rel.max() <= 1.0
    for r in rel:                   # min-max normalized per frame: spans most of [0, 1] after upsampling
        assert r.max() - r.min() > 0.5


@pytest.mark.parametrize("H, W", [(120, 160), (97, 131)])
def test_api_prompt_changes_key_frames_only_and_is_deterministic(clip, clip_dir, H, W):
    frames = noise_frames(len(TIMES), H, W, seed=1)
    before = frames.copy()
    out = apply_visual_prompt(frames, TIMES, RECORD, "api_prompt", clip=clip)
    assert np.array_equal(frames, before), "input mutated"
    assert out.shape == frames.shape and out.dtype == np.uint8
    for t in range(len(TIMES)):
        assert (t in KEY) == (not np.array_equal(out[t], frames[t])), t
    again = apply_visual_prompt(frames, TIMES, RECORD, "api_prompt", clip=ClipRelevance.from_pretrained(clip_dir))
    assert np.array_equal(out, again)           # exact: a fresh load of the same weights, same CPU math


def test_the_question_steers_the_map(clip):
    frames = noise_frames(1, 96, 96, seed=2)
    a, b = clip.relevance(frames, "where is the cup?"), clip.relevance(frames, "what color is the ball?")
    assert np.abs(a - b).max() > 1e-3


def test_blend_keeps_relevant_pixels_and_dims_the_rest_to_darkens_levels():
    frame = noise_frames(1, 20, 30, seed=4)[0]
    p = frame.astype(int)
    assert np.array_equal(api_prompt(frame, np.ones((20, 30))), frame)                     # m = 1: kept
    assert np.array_equal(api_prompt(frame, np.zeros((20, 30))), (p * 3 + 5) // 10)        # m = 0: darken's
    assert np.array_equal(api_prompt(frame, np.full((20, 30), 0.5)), (p * 13 + 10) // 20)  # p * 0.65, half up


def test_api_prompt_without_a_clip_names_the_setting():
    with pytest.raises(ValueError, match=r"visioncoach\.clip_path"):
        apply_visual_prompt(noise_frames(len(TIMES), 8, 8), TIMES, RECORD, "api_prompt")


def test_a_clip_path_that_is_not_a_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        ClipRelevance.from_pretrained(str(tmp_path / "missing"))
