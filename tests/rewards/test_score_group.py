import math

import pytest

from visd_core.config import Reward
from visd_core.rewards import COMPONENTS, TASK_COMPONENTS, score_group
from visd_core.rewards.diagnosis import ISSUE_KINDS

FRAME = (400, 200)                     # resized (width, height); normalized 0.1 = 40 px wide, 20 px high
KEY = {"key_frames": [{"time": 2.0, "idx": 0}, {"time": 6.0, "idx": 1}],
       "key_items": {"0": {"black cat": [[0.1, 0.1, 0.2, 0.3]]}, "1": {"dog": [[0.5, 0.5, 0.75, 1.0]]}}}
CAT, DOG = "[40,20,80,60]", "[200,100,300,200]"                       # the same boxes in pixels
MCQ = {"options": ["A. x", "B. y", "C. z"]}


def one(record, text, progress=0.0, cfg=None, **kw):
    return score_group(record, [text], FRAME, progress, cfg or Reward(), **kw)[0]


def test_every_task_scores_exactly_its_components(make_record):
    records = {"temporal_qa": make_record("temporal_qa", window=[2.0, 6.0]),
               "temporal_mcq": make_record("temporal_mcq", answer="B", window=[2.0, 6.0], **MCQ),
               "visual_qa": make_record("visual_qa", answer="black cat", **KEY),
               "st_freeform": make_record("st_freeform", answer="the cat meets the dog", **KEY),
               "video_mcq": make_record("video_mcq", answer="C", **MCQ),
               "video_freeform": make_record("video_freeform", answer="a dog barks")}
    for task, rec in records.items():
        comps = one(rec, "<think>x</think><answer>x</answer>").components
        assert set(comps) == set(COMPONENTS)
        assert {k for k, v in comps.items() if v is not None} == set(TASK_COMPONENTS[task]), task


def test_perfect_temporal_mcq_and_weighted_total(make_record):
    rec = make_record("temporal_mcq", answer="B", window=[2.0, 6.0], **MCQ)
    text = ("<think>It starts at <t>2.5</t>s and ends by <t>5.5</t>s.</think>"
            "<answer>From <t>2.0</t>s to <t>6.0</t>s\nCorrect Option: B</answer>")
    r = one(rec, text, cfg=Reward(w_ans=2.0, w_fmt=0.5, w_ans_tmp=3.0, w_thk_tmp=0.25))
    assert r.components == {"ans": 1.0, "fmt": 1.0, "ans_tmp": 1.0, "ans_spa": None, "thk_tmp": 1.0, "thk_spa": None}
    assert r.total == 2.0 + 0.5 + 3.0 + 0.25                                     # visd eq. 10
    d = r.diagnosis
    assert d.answer_correct and d.format_ok and d.issues == [] and d.main_issue() is None
    assert d.reasoning_consistent is True and d.claimed_times == [2.5, 5.5] and d.gt_window == (2.0, 6.0)


def test_temporal_qa_wrong_interval_and_inconsistent_reasoning(make_record):
    rec = make_record("temporal_qa", window=[2.0, 6.0])
    r = one(rec, "<think>From <t>2.0</t>s until <t>3.0</t>s.</think><answer>From <t>8</t>s to <t>10</t>s</answer>")
    assert r.components["ans_tmp"] == 0.0 and r.components["thk_tmp"] == 1.0
    d = r.diagnosis
    assert d.answer_correct is False and d.answer_score == 0.0
    assert d.reasoning_consistent is False and "8-10s" in d.consistency_note
    assert d.issues == ["answer"]


def test_visual_qa_scales_ground_truth_into_the_resized_frame(make_record):
    rec = make_record("visual_qa", answer="black cat", **KEY)
    text = (f"<think>The <obj>black cat</obj><box>{CAT}</box> sits left.</think>"
            f"<answer><obj>black cat</obj><box>{CAT}</box></answer>")
    r = score_group(rec, [text], FRAME, 0.0, Reward())[0]
    assert r.components["ans_spa"] == 1.0 and r.components["thk_spa"] == 1.0 and r.diagnosis.issues == []
    # The same pixels against a larger frame (GT at [60,30,120,90]) overlap only partly.
    r = score_group(rec, [text], (600, 300), 0.0, Reward())[0]
    assert r.components["ans_spa"] == pytest.approx(600 / (1600 + 3600 - 600))


def test_visual_qa_wrong_object_name(make_record):
    rec = make_record("visual_qa", answer="black cat", **KEY)
    text = f"<think><obj>dog</obj><box>{CAT}</box></think><answer><obj>dog</obj><box>{CAT}</box></answer>"
    d = one(rec, text).diagnosis
    assert d.unknown_objects == ["dog"] and d.missing_objects == ["black cat"]
    assert d.issues == ["object"]                                   # right box, wrong name


def test_st_freeform_both_spatial_modes_and_sigma(make_record):
    rec = make_record("st_freeform", answer="the cat meets the dog", **KEY)
    text = (f"<think>The <obj>cat</obj><box>{CAT}</box>at<t>2.0</t>s walks to "
            f"<obj>cat</obj><box>{DOG}</box>at<t>7.0</t>s.</think><answer>The cat meets the dog.</answer>")
    # second claim: gated to the 6.0 frame (|7 − 6| <= τ = 1), box on the dog, named "cat"
    r_max = one(rec, text, progress=0.0, cfg=Reward(spatial="max_iou"))
    r_obj = one(rec, text, progress=0.0, cfg=Reward(spatial="object_aware"))
    assert r_max.components["thk_spa"] == 1.0                       # (1 + 1) / 2: names ignored
    assert r_obj.components["thk_spa"] == 1.0                       # the mismatched claim is not in ℐ
    assert r_max.components["ans"] == 1.0 and r_max.components["fmt"] == 1.0
    # thinking temporal (eq. 12): Δt = 0 and 1; σ = 4 at the start, 1 after 75% of training
    assert r_max.components["thk_tmp"] == pytest.approx((1 + math.exp(-1 / 32)) / 2)
    assert one(rec, text, progress=0.9).components["thk_tmp"] == pytest.approx((1 + math.exp(-1 / 2)) / 2)
    assert r_max.diagnosis.missing_objects == ["dog"] and r_max.diagnosis.issues == []


def test_st_freeform_with_a_window_uses_visioncoach_eq6(make_record):
    rec = make_record("st_freeform", answer="x", window=[3.0, 5.0], **KEY)
    text = f"<think><obj>cat</obj><box>{CAT}</box>at<t>4.0</t>s</think><answer>x</answer>"
    assert one(rec, text).components["thk_tmp"] == 1.0          # inside the window, 2 s from any key frame


def test_nothing_right(make_record):
    rec = make_record("st_freeform", answer="the cat meets the dog", **KEY)
    d = one(rec, "<think>The <obj>unicorn</obj><box>[0,0,5,5]</box>at<t>30</t>s").diagnosis
    assert d.truncated and not d.has_answer and d.pred_answer is None
    assert d.issues == list(ISSUE_KINDS)                             # format, answer, time, object, box
    assert d.main_issue() == "format"


def test_no_claims_and_no_supervision(make_record):
    rec = make_record("st_freeform", answer="a dog barks")          # no key frames: thinking terms masked
    r = one(rec, "<think>It barks.</think><answer>a dog barks</answer>")
    assert r.components["thk_tmp"] is None and r.components["thk_spa"] is None
    assert r.components["fmt"] == 0.5                                # grounded reasoning still expected
    rec = make_record("st_freeform", answer="a dog barks", **KEY)
    r = one(rec, "<think>It barks.</think><answer>a dog barks</answer>")
    assert r.components["thk_tmp"] == 0.0 and r.components["thk_spa"] == 0.0
    assert r.diagnosis.issues == ["format", "time", "object", "box"]


def test_group_equals_one_by_one_and_truncation_flag(make_record):
    rec = make_record("video_mcq", answer="C", **MCQ)
    texts = ["<think>x</think><answer>C</answer>", "<think>x</think><answer>(A)</answer>", "", "<think>"]
    group = score_group(rec, texts, FRAME, 0.3, Reward(), truncated=[False, True, False, False])
    assert [r.total for r in group] == [one(rec, t, 0.3).total for t in texts] == [2.0, 1.0, 0.0, 0.0]
    assert [r.diagnosis.truncated for r in group] == [False, True, False, True]


@pytest.mark.parametrize("kwargs,match", [
    ({"frame_size": (0, 10)}, "frame_size"), ({"frame_size": (10.5, 10)}, "frame_size"),
    ({"progress": 1.5}, "progress"), ({"cfg": Reward(spatial="max")}, "reward.spatial"),
    ({"cfg": Reward(multi_instance="median")}, "reward.multi_instance"),
    ({"truncated": [True, False]}, "truncated"),
])
def test_caller_errors_are_value_errors(make_record, kwargs, match):
    args = {"record": make_record("video_mcq", answer="C", **MCQ), "completions": ["x"], "frame_size": FRAME,
            "progress": 0.5, "cfg": Reward(), **kwargs}
    with pytest.raises(ValueError, match=match):
        score_group(**args)


TWO_CATS = {"key_frames": [{"time": 2.0, "idx": 0}],
            "key_items": {"0": {"black cat": [[0.1, 0.1, 0.2, 0.3], [0.5, 0.5, 0.75, 1.0]]}}}


@pytest.mark.parametrize("spatial", ["max_iou", "object_aware"])
@pytest.mark.parametrize("multi_instance,expect", [(None, 1.0), ("max", 1.0), ("mean", 0.5)])
def test_one_box_on_one_of_two_instances(make_record, spatial, multi_instance, expect):
    # visd eq. 13 / visioncoach eq. 8 take the max over the object's boxes (the default); the
    # released code's "mean" asks for every instance.
    cfg = Reward(spatial=spatial) if multi_instance is None else Reward(spatial=spatial, multi_instance=multi_instance)
    rec = make_record("st_freeform", answer="a cat", **TWO_CATS)
    r = one(rec, f"<think>The <obj>cat</obj><box>{CAT}</box>at<t>2.0</t>s sits.</think><answer>a cat</answer>",
            cfg=cfg)
    assert r.components["thk_spa"] == pytest.approx(expect)
    rec = make_record("visual_qa", answer="black cat", **TWO_CATS)
    r = one(rec, f"<think><obj>black cat</obj><box>{CAT}</box></think><answer><obj>black cat</obj><box>{CAT}</box>"
                 "</answer>", cfg=cfg)
    assert r.components["ans_spa"] == pytest.approx(expect) and r.components["thk_spa"] == pytest.approx(expect)


def test_visual_qa_answer_not_named_in_evidence_uses_all_its_boxes(make_record):
    rec = make_record("visual_qa", answer="kitty", key_frames=[{"time": 0.0, "idx": 0}],
                      key_items={"0": {"black cat": [[0.1, 0.1, 0.2, 0.3]]}})
    r = one(rec, f"<think><obj>kitty</obj><box>{CAT}</box></think><answer><obj>kitty</obj><box>{CAT}</box></answer>")
    assert r.components["ans_spa"] == 1.0 and r.diagnosis.gt_objects == ["kitty"] and r.diagnosis.issues == []


def test_synthetic_sft_targets_earn_full_marks():
    """The embedded dataset's reference reasoning is what the reward should call perfect: every
    component at its maximum except box IoUs, which lose only integer-pixel rounding (boxes of a
    112x84 frame)."""
    from visd_core.data.schema import parse_record
    from visd_core.data.synthetic import RH, RW, make_record
    seen = set()
    for i in range(12):                          # the tasks take turns: two of each
        rec = parse_record(make_record("train", 0, i)[0])
        seen.add(rec.task)
        for spatial in ("max_iou", "object_aware"):
            r = score_group(rec, [rec.reasoning_process], (RW, RH), 0.9, Reward(spatial=spatial))[0]
            assert r.diagnosis.issues == [] and r.diagnosis.format_issues == [], (rec.task, r.diagnosis)
            for k, v in r.components.items():
                if v is not None:
                    assert v >= (0.8 if k in ("ans_spa", "thk_spa") else 1.0), (rec.task, k, v)
    assert seen == set(TASK_COMPONENTS)
