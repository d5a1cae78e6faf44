import random

import pytest

from visd_core.config import Reward
from visd_core.data.schema import parse_record
from visd_core.rewards.reward import score_group
from visd_core.teacher.corrupt import corrupt_reasoning

MCQ = parse_record({
    "id": "a", "task": "temporal_mcq", "question": "When does the red circle touch the blue square?",
    "options": ["A. 0.0-1.0s", "B. 2.0-3.4s", "C. 4.0-5.0s", "D. 5.0-6.0s"], "answer": "B", "window": [2.0, 3.4],
    "video_path": "v.mp4", "key_frames": [{"time": 2.4, "idx": 0}],
    "key_items": {"0": {"red circle": [[0.1, 0.2, 0.3, 0.4]]}}, "image_size": [160, 120]})
MCQ_GOOD = ("<think>The red circle <obj>red circle</obj><box>[11,17,34,34]</box>at<t>2.4</t>s meets the blue "
            "square from <t>2.0</t>s to <t>3.4</t>s.</think><answer>From <t>2.0</t>s to <t>3.4</t>s. "
            "Correct Option: B</answer>")
FREE = parse_record({
    "id": "b", "task": "st_freeform", "question": "What does the red circle do?", "answer": "It pushes the blue square.",
    "window": [2.0, 3.4], "video_path": "v.mp4", "key_frames": [{"time": 2.4, "idx": 0}],
    "key_items": {"0": {"red circle": [[0.1, 0.2, 0.3, 0.4]]}}, "image_size": [160, 120]})
FREE_GOOD = ("<think>The red circle <obj>red circle</obj><box>[11,17,34,34]</box>at<t>2.4</t>s moves right into "
             "the blue square.</think><answer>It pushes the blue square.</answer>")


@pytest.mark.parametrize("record, good_text, kinds", [
    (MCQ, MCQ_GOOD, {"time", "answer", "truncate"}),          # boxes carry no reward in temporal MCQ
    (FREE, FREE_GOOD, {"time", "box", "answer", "truncate"}),
])
def test_corruptions_lower_the_reward_and_are_deterministic(record, good_text, kinds):
    good = score_group(record, [good_text], (112, 84), 1.0, Reward())[0].total
    seen = set()
    for seed in range(40):
        bad, kind = corrupt_reasoning(good_text, random.Random(seed), (112, 84))
        assert (bad, kind) == corrupt_reasoning(good_text, random.Random(seed), (112, 84))
        assert bad != good_text
        if kind in kinds:
            assert score_group(record, [bad], (112, 84), 1.0, Reward())[0].total < good, (kind, bad)
        seen.add(kind)
    assert seen == {"time", "box", "answer", "truncate"}
