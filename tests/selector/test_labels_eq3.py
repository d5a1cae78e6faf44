"""Eq. 3 on hand-made score tables: argmax of A + G, ties to raw then KINDS order, missing replies
left out of the average, and (A, G) of real replies through the verifier."""
import pytest

from visd_core.data.schema import parse_record
from visd_core.selector.labels import KindScore, answer_and_grounding, average, choose_label
from visd_core.selector.proxy import ProxyReply


def table(**sums):
    """{kind: KindScore} from kind=(A, G) or kind=None (no reasoner replied)."""
    return {k: KindScore(None, None, 0) if v is None else KindScore(v[0], v[1], 1) for k, v in sums.items()}


@pytest.mark.parametrize("scores, label", [
    (table(circle=(1, 0.2), darken=(1, 0.6), numpro=(0, 0.9), raw=(1, 0.1)), "darken"),   # A + G, not G alone
    (table(circle=(0, 0.9), darken=(1, 0.0), numpro=(0, 0.1), raw=(0, 0.0)), "darken"),   # 1.0 > 0.9
    (table(circle=(1, 0.5), darken=(1, 0.5), numpro=(0, 0.2), raw=(1, 0.3)), "circle"),   # tie: KINDS order
    (table(api_prompt=(1, 0.5), circle=(1, 0.5), raw=(0, 0.0)), "api_prompt"),
    (table(circle=(1, 0.5), darken=(1, 0.5), raw=(1, 0.5)), "raw"),                        # tie with raw: raw
    (table(circle=(0, 0), darken=(0, 0), numpro=(0, 0), raw=(0, 0)), "raw"),               # nothing helps
    (table(circle=(1, 0.2), darken=None, raw=(0, 0.0)), "circle"),                          # darken unscored
    (table(circle=None, darken=None, numpro=(0, 0.0), raw=None), "numpro"),                 # the only candidate
    (table(circle=None, darken=None, numpro=None, raw=None), None),                         # no label at all
])
def test_choose_label(scores, label):
    assert choose_label(scores) == label


def test_sums_equal_up_to_rounding_are_a_tie():
    scores = {"circle": KindScore(0.1 + 0.2, 0.0, 2), "raw": KindScore(0.3, 0.0, 2)}      # 0.30000000000000004
    assert choose_label(scores) == "raw"


def test_average_leaves_missing_replies_out():
    s = average([(1.0, 0.5), None, (0.0, 0.25)])
    assert (s.A, s.G, s.n) == (0.5, 0.375, 2)
    assert average([None, None]) == KindScore(None, None, 0)
    # A kind answered by one reasoner competes on that reasoner's score alone.
    scores = {"darken": average([(1.0, 1.0), None]), "raw": average([(1.0, 0.8), (0.0, 0.0)])}
    assert choose_label(scores) == "darken"


MCQ = parse_record({
    "id": "m", "task": "temporal_mcq", "question": "When does the red square move?",
    "options": ["A. From 1.0s to 2.0s", "B. From 3.0s to 5.0s"], "answer": "B", "window": [3.0, 5.0],
    "video_path": "v.mp4", "key_frames": [{"time": 3.6, "idx": 0}],
    "key_items": {"0": {"red square": [[0.25, 0.5, 0.5, 1.0]]}}})


def test_answer_and_grounding_of_replies():
    size = (100, 80)     # the reasoner's frames: the red square is [25, 40, 50, 80] there
    good = ("<think>The <obj>red square</obj><box>[25,40,50,80]</box>at<t>3.6</t>s moves.</think>"
            "<answer>From <t>3.0</t>s to <t>5.0</t>s. Correct Option: B</answer>")
    a, g = answer_and_grounding(MCQ, ProxyReply(good, size))
    assert a == 1.0 and g == pytest.approx(1.0)           # G = mean(ans_tmp, thk_tmp): both exact
    wrong_letter = good.replace("Option: B", "Option: A")
    a2, g2 = answer_and_grounding(MCQ, ProxyReply(wrong_letter, size))
    assert a2 == 0.0 and g2 == pytest.approx(g)           # binary accuracy; grounding unchanged
    off = ("<think>It moves at <t>9.0</t>s.</think>"
           "<answer>From <t>8.0</t>s to <t>9.0</t>s. Correct Option: B</answer>")
    a3, g3 = answer_and_grounding(MCQ, ProxyReply(off, size))
    assert a3 == 1.0 and g3 < 0.5                         # right letter, grounding far off
    assert answer_and_grounding(MCQ, ProxyReply("garbage", size)) == (0.0, 0.0)


def test_visual_qa_accuracy_is_the_box_reward_and_not_counted_twice():
    rec = parse_record({
        "id": "v", "task": "visual_qa", "question": "Where is the blue circle at 1.0s?", "answer": "blue circle",
        "video_path": "v.mp4", "key_frames": [{"time": 1.0, "idx": 0}],
        "key_items": {"0": {"blue circle": [[0.0, 0.0, 0.5, 0.5]]}}})
    half = ("<think>The <obj>blue circle</obj><box>[0,0,100,100]</box>at<t>1.0</t>s.</think>"
            "<answer><obj>blue circle</obj><box>[0,0,50,100]</box></answer>")      # IoU 0.5 with [0,0,100,100]
    a, g = answer_and_grounding(rec, ProxyReply(half, (200, 200)))
    assert a == pytest.approx(0.5) and g == pytest.approx(1.0)     # A = ans_spa; G = thk_spa alone
