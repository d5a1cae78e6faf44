import pytest

from visd_core.rewards.format import BROKEN, FULL, PARTIAL, format_reward
from visd_core.rewards.parse import parse_completion

CLAIM = "<obj>cat</obj><box>[1,2,30,40]</box>at<t>2.5</t>s"


@pytest.mark.parametrize("task,think,expected", [
    ("temporal_qa", "from <t>1</t>s to <t>3</t>s", FULL),
    ("temporal_qa", "around <t>1</t>s", PARTIAL),                # needs both ends cited
    ("temporal_mcq", "no times at all", PARTIAL),
    ("visual_qa", "<obj>cat</obj><box>[1,2,30,40]</box> on the left", FULL),
    ("visual_qa", "a cat on the left", PARTIAL),
    ("st_freeform", f"first {CLAIM}", FULL),
    ("st_freeform", "<obj>cat</obj><box>[1,2,30,40]</box> with no time", PARTIAL),
    ("video_mcq", "plain reasoning", FULL),                      # general QA needs no grounding
    ("video_freeform", "", FULL),
])
def test_grounding_levels(task, think, expected):
    score, issues = format_reward(parse_completion(f"<think>{think}</think><answer>B</answer>"), task)
    assert score == expected
    assert (issues == []) == (expected == FULL)


@pytest.mark.parametrize("text", [
    f"<think>{CLAIM}</think>",                                   # no final answer
    f"<think>{CLAIM}",                                           # truncated
    f"<think>{CLAIM}</think><answer>x</answer> trailing",
    "<think><obj>cat</obj><box>[1,2,30,40]</box>at<t>2.5</t></think><answer>x</answer></box>",
    "<think><obj>cat</obj><box>[30,2,1,40]</box>at<t>2.5</t>s</think><answer>x</answer>",   # inverted box
    "<think><t>-1</t>s <t>2</t>s</think><answer>x</answer>",
])
def test_broken_structure_scores_zero_for_every_task(text):
    for task in ("temporal_qa", "visual_qa", "st_freeform", "video_mcq"):
        score, issues = format_reward(parse_completion(text), task)
        assert score == BROKEN and issues
