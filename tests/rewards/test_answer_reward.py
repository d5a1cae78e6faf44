import pytest

from visd_core.rewards.answer import box_reward, chosen_option, freeform_reward, interval_reward, option_reward
from visd_core.rewards.parse import parse_completion


def _c(answer):
    return parse_completion(f"<think>x</think><answer>{answer}</answer>")


@pytest.mark.parametrize("answer", ["B", "B.", "(B)", "[B]", "B. the dog", "Correct Option: B"])
def test_mcq_letter_tolerance(answer):
    assert option_reward(_c(answer), "B") == 1.0


@pytest.mark.parametrize("answer", ["C", "b", "B dog", "Option B", ""])
def test_mcq_wrong_or_unreadable(answer):
    assert option_reward(_c(answer), "B") == 0.0


def test_temporal_mcq_uses_correct_option_over_a_leading_letter():
    c = _c("A. From <t>1</t>s to <t>2</t>s\nCorrect Option: C")
    assert chosen_option(c) == "C"


def test_no_answer_scores_zero():
    c = parse_completion("<think>B</think>")
    assert option_reward(c, "B") == 0.0 and freeform_reward(c, "x") == 0.0
    assert interval_reward(c, (1.0, 2.0)) == 0.0 and box_reward(c, [(0, 0, 1, 1)]) == 0.0


def test_freeform_is_rouge():
    assert freeform_reward(_c("The red circle moves left."), "the red circle moves left") == 1.0
    assert 0.0 < freeform_reward(_c("a red circle"), "the red circle moves left") < 1.0


def test_interval_reward_is_tiou():
    assert interval_reward(_c("From <t>2</t>s to <t>6</t>s"), (4.0, 8.0)) == pytest.approx(1 / 3)
    assert interval_reward(_c("From <t>6</t>s to <t>2</t>s"), (2.0, 6.0)) == 0.0          # inverted
    assert interval_reward(_c("From <t>3</t>s to <t>3</t>s"), (3.0, 3.0)) == 0.0          # zero length
    assert interval_reward(_c("[4, 8]"), (4.0, 8.0)) == 1.0


def test_box_reward_is_iou_in_the_same_pixel_space():
    c = _c("<obj>cat</obj><box>[0,0,10,10]</box>")
    assert box_reward(c, [(5.0, 5.0, 15.0, 15.0)]) == pytest.approx(25 / 175)
    assert box_reward(_c("<obj>cat</obj><box>[3,3,3,9]</box>"), [(0.0, 0.0, 10.0, 10.0)]) == 0.0   # zero area
