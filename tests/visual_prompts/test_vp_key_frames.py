"""Key frames land on the sampled frame nearest in time, within half the median sampling interval."""
import pytest

from tests.visual_prompts.scenes import record_with
from visd_core.visual_prompts import key_frame_boxes
from visd_core.visual_prompts.key_frames import match_tolerance

TIMES = [0.5 * i for i in range(16)]        # 16 samples every 0.5 s: tolerance 0.25 s
BOX = [0.1, 0.2, 0.3, 0.4]


@pytest.mark.parametrize("time, expected", [
    (2.0, {4: [BOX]}),          # exactly on a sample
    (2.2, {4: [BOX]}),          # between samples, nearer the earlier
    (2.3, {5: [BOX]}),          # between samples, nearer the later
    (2.25, {4: [BOX]}),         # exactly halfway (= the tolerance): shown, on the earlier one
    (7.7, {15: [BOX]}),         # past the last sample but within the tolerance
    (7.76, {}),                 # past the last sample by more than the tolerance: not shown
    (9.0, {}),                  # out of range
])
def test_one_key_frame(time, expected):
    rec = record_with([(time, 0)], {0: {"red square": [BOX]}})
    assert key_frame_boxes(TIMES, rec) == expected


def test_two_key_frames_on_one_sampled_frame_merge_their_boxes():
    other = [0.5, 0.5, 0.9, 0.9]
    rec = record_with([(2.1, 0), (1.9, 1), (6.0, 2)],
                      {0: {"red square": [BOX]}, 1: {"blue circle": [other], "cup": [BOX]}, 2: {"cup": [other]}})
    assert key_frame_boxes(TIMES, rec) == {4: [BOX, other, BOX], 12: [other]}


def test_a_key_frame_without_boxes_is_still_a_key_frame():
    rec = record_with([(1.0, 0), (3.0, 1)], {1: {"cup": [BOX]}})
    assert key_frame_boxes(TIMES, rec) == {2: [], 6: [BOX]}


def test_the_median_interval_ignores_one_long_gap():
    times = [0.0, 1.0, 2.0, 3.0, 10.0]      # median step 1 s, tolerance 0.5 s despite the 7 s gap
    assert match_tolerance(times) == pytest.approx(0.5)
    rec = record_with([(6.0, 0), (9.6, 1)], {0: {"a": [BOX]}, 1: {"b": [BOX]}})
    assert key_frame_boxes(times, rec) == {4: [BOX]}     # 6.0 s fell into the gap: not shown


def test_a_single_sampled_frame_stands_for_the_whole_clip():
    rec = record_with([(40.0, 0)], {0: {"a": [BOX]}})
    assert key_frame_boxes([3.0], rec) == {0: [BOX]}


def test_no_sampled_frames_is_an_error():
    with pytest.raises(ValueError, match="no sampled frames"):
        key_frame_boxes([], record_with([(1.0, 0)], {}))
