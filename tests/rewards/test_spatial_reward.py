import pytest

from visd_core.rewards.parse import Claim
from visd_core.rewards.spatial import (FrameEvidence, frame_evidence, max_iou_reward, object_aware_reward,
                                       soft_match, think_box_reward)

FRAME = (400, 200)                                      # resized (width, height)
CAT, DOG = (0.0, 0.0, 10.0, 10.0), (20.0, 20.0, 40.0, 40.0)
HALF_CAT = (0.0, 0.0, 10.0, 5.0)                        # IoU 0.5 with CAT
FRAMES = [FrameEvidence(2.0, {"black cat": [CAT], "dog": [DOG]}), FrameEvidence(6.0, {"dog": [DOG]})]


def test_soft_match_eq7():
    assert soft_match("cat", "black cat") and soft_match("Black  Cat", "black cat") and soft_match("black cat", "cat")
    assert not soft_match("dog", "black cat")
    assert not soft_match("", "cat") and not soft_match("cat", "")   # the empty name is in every name


def test_frame_evidence_scales_boxes_and_sorts(make_record):
    rec = make_record("st_freeform", answer="x", key_frames=[{"time": 5.0, "idx": 1}, {"time": 1.0, "idx": 0}],
                      key_items={"0": {"cat": [[0.1, 0.1, 0.2, 0.3]]}, "1": {"dog": [[0.5, 0.5, 1.0, 1.0]]}})
    ev = frame_evidence(rec, FRAME)
    assert [f.time for f in ev] == [1.0, 5.0]
    assert ev[0].objects["cat"] == [pytest.approx((40.0, 20.0, 80.0, 60.0))]


def test_max_iou_eq13_averages_over_all_claims():
    claims = [Claim("cat", [CAT], 2.0),                 # 1.0
              Claim("anything", [HALF_CAT], 2.5),       # 0.5: max over objects, names ignored
              Claim("dog", [DOG], 9.0),                 # 3 s from the nearest key frame: gated out, 0
              Claim("dog", [DOG], None)]                # no time: not a tuple, not counted
    assert max_iou_reward(claims, FRAMES, tau=1.0) == pytest.approx(1.5 / 3)


def test_gate_is_symmetric():
    # The public code's one-sided `gt − pred < 1` would pass a claim 5 s after the key frame.
    assert max_iou_reward([Claim("dog", [DOG], 11.0)], FRAMES, tau=1.0) == 0.0
    assert max_iou_reward([Claim("dog", [DOG], 1.0)], [FrameEvidence(6.0, {"dog": [DOG]})], tau=1.0) == 0.0
    assert max_iou_reward([Claim("dog", [DOG], 7.0)], FRAMES, tau=1.0) == 1.0     # |7 − 6| = τ passes


def test_object_aware_eq8_averages_over_matched_valid_claims():
    claims = [Claim("cat", [HALF_CAT], 2.0),            # matches "black cat": 0.5
              Claim("dog", [DOG], 6.3),                 # 1.0
              Claim("unicorn", [CAT], 2.0),             # no name match: not in ℐ
              Claim("dog", [DOG], 20.0)]                # gated out: not in ℐ
    assert object_aware_reward(claims, FRAMES, tau=1.0) == pytest.approx(0.75)


def test_object_aware_scores_only_the_named_object():
    # A cat claim whose box sits on the dog earns nothing here, while max-IoU pays it in full.
    claim = [Claim("cat", [DOG], 2.0)]
    assert object_aware_reward(claim, FRAMES, tau=1.0) == 0.0
    assert max_iou_reward(claim, FRAMES, tau=1.0) == 1.0


@pytest.mark.parametrize("reward", [max_iou_reward, object_aware_reward])
def test_multi_instance_object_takes_the_max_over_its_boxes_by_default(reward):
    # visd eq. 13 / visioncoach eq. 8: max over b* ∈ ℬ*(t̃_m) — one box on one of two people is exact.
    frames = [FrameEvidence(1.0, {"person": [CAT, DOG]})]
    assert reward([Claim("person", [CAT], 1.0)], frames, 1.0) == 1.0
    assert reward([Claim("person", [HALF_CAT], 1.0)], frames, 1.0) == pytest.approx(0.5)
    assert reward([Claim("person", [CAT, DOG], 1.0)], frames, 1.0) == 1.0


@pytest.mark.parametrize("reward", [max_iou_reward, object_aware_reward])
def test_multi_instance_mean_is_the_released_codes_coverage(reward):
    frames = [FrameEvidence(1.0, {"person": [CAT, DOG]})]
    assert reward([Claim("person", [CAT], 1.0)], frames, 1.0, "mean") == pytest.approx(0.5)
    assert reward([Claim("person", [CAT, DOG], 1.0)], frames, 1.0, "mean") == 1.0
    # One ground-truth box: both readings are IoU(b_m, b*).
    assert reward([Claim("dog", [DOG], 6.0)], FRAMES, 1.0, "mean") == reward([Claim("dog", [DOG], 6.0)], FRAMES, 1.0)


def test_no_claims_no_supervision_zero_area():
    assert max_iou_reward([], FRAMES, 1.0) == 0.0 and object_aware_reward([], FRAMES, 1.0) == 0.0
    assert max_iou_reward([Claim("cat", [CAT], 2.0)], [], 1.0) == 0.0
    assert object_aware_reward([Claim("cat", [(5.0, 5.0, 5.0, 9.0)], 2.0)], FRAMES, 1.0) == 0.0


def test_visual_qa_think_boxes_take_the_best():
    assert think_box_reward([DOG, HALF_CAT], [CAT]) == 0.5
    assert think_box_reward([], [CAT]) == 0.0
    assert think_box_reward([CAT], [CAT, DOG]) == 1.0 and think_box_reward([CAT], [CAT, DOG], "mean") == 0.5
