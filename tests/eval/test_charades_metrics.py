import pytest

from visd_core.eval import charades, mcq


def test_recall_at_thresholds_counts_ties_and_miou():
    row = charades.summarize([0.3, 0.5, 0.69, 0.7, 0.0], unparsed=1)
    assert row == {"R@0.3": 80.0, "R@0.5": 60.0, "R@0.7": 20.0, "mIoU": pytest.approx(43.8), "n": 5, "unparsed": 1}
    with pytest.raises(ValueError):
        charades.summarize([])


def test_segment_of_output():
    assert charades.segment_of_output("<think>…</think><answer>From <t>1.5</t>s to <t>4</t>s</answer>") == (1.5, 4.0)
    assert charades.segment_of_output("The event happens in [2.0, 7.5].") == (2.0, 7.5)
    assert charades.segment_of_output("From <t>5</t>s to <t>1</t>s") is None        # inverted
    assert charades.segment_of_output("sometime") is None


def test_mcq_accuracy():
    outs = ["<think>x</think><answer>(B)</answer>", "C.", "<answer>Correct Option: A</answer>", "I think D"]
    assert mcq.accuracy(outs, ["B", "C", "A", "D"]) == 75.0
    with pytest.raises(ValueError):
        mcq.accuracy(outs, ["B"])
