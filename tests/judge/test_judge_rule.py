"""The rule judge on hand-made diagnoses: every branch of verdict, consistency and error cause."""
import pytest
from hypothesis import given, settings, strategies as st

from judge_cases import diag, request, sentences
from visd_core.data.schema import TASKS
from visd_core.judge import JudgeRequest, RuleJudge, rule_feedback
from visd_core.rewards.diagnosis import ISSUE_KINDS, Diagnosis


def fb(task, pred="B", think="<think>r</think>", **d):
    return rule_feedback(request(task, pred, think, diagnosis=diag(task, pred_answer=pred, **d)))


# ---------------------------------------------------------------------------- missing answer
def test_missing_answer_truncated_names_the_grounding_cause():
    text = fb("temporal_qa", None, has_answer=False, truncated=True, claimed_times=[2.0],
              issues=["format", "time"])
    assert text.startswith("The final answer was not produced")
    assert "cut off, most likely because the thinking section was too long" in text
    assert "the reasoning cites 2.0s but the verified window is 3.2\u20135.0s" in text
    assert len(sentences(text)) == 2


def test_missing_answer_not_truncated_says_it_may_have_been():
    text = fb("video_mcq", None, has_answer=False, truncated=False, issues=["format"])
    assert "may have been truncated because the thinking section was too long" in text
    assert "close with a final <answer> block" in text        # format is not repeated as a cause
    assert len(sentences(text)) == 2


# ---------------------------------------------------------------------------- verdicts
def test_fully_correct_mcq_is_brief_and_positive():
    text = fb("video_mcq", "C", answer_correct=True, answer_score=1.0, reasoning_consistent=True)
    assert text == ('The final answer is fully correct: option C ("the green star"). '
                    'The reasoning broadly supports it.')


def test_wrong_mcq_with_consistent_reasoning_gets_the_default_cause():
    text = fb("video_mcq", "(A)", answer_correct=False, reasoning_consistent=True)
    assert 'it chose option A, but the answer is C ("the green star")' in text
    assert "The reasoning is consistent with this answer." in text
    assert "too broad or too thin in evidence" in text            # default cause without an issue
    assert len(sentences(text)) == 3


@pytest.mark.parametrize("pred,score,correct,expect", [
    ("From <t>3.1</t>s to <t>5.0</t>s", 0.95, True, "fully correct: the window 3.1\u20135.0s matches"),
    ("From <t>2.0</t>s to <t>6.0</t>s", 0.55, True, "partly correct: the window 2.0\u20136.0s overlaps the "
                                                    "verified 3.2\u20135.0s but is too broad"),
    ("From <t>3.8</t>s to <t>4.4</t>s", 0.33, False, "wrong: the window 3.8\u20134.4s overlaps the verified "
                                                     "3.2\u20135.0s but is too narrow"),
    ("From <t>0.5</t>s to <t>2.0</t>s", 0.0, False, "wrong: the window 0.5\u20132.0s is too early and misses"),
    ("From <t>6.0</t>s to <t>8.0</t>s", 0.0, False, "is too late and misses"),
    ("sometime in the middle", 0.0, False, "wrong: it gives no time window (the verified window is 3.2\u20135.0s)"),
])
def test_temporal_window_verdicts(pred, score, correct, expect):
    assert expect in fb("temporal_qa", pred, answer_correct=correct, answer_score=score)


@pytest.mark.parametrize("pred,expect", [
    ("From <t>3.2</t>s to <t>5.0</t>s. Correct Option: B", "fully correct: option B"),
    ("From <t>0.0</t>s to <t>1.0</t>s. Correct Option: B",
     'partly correct: option B ("right after it touches the blue square") is right, but the window '
     '0.0\u20131.0s is too early'),
    ("From <t>3.2</t>s to <t>5.0</t>s. Correct Option: (D)",
     "partly correct: the window 3.2\u20135.0s matches the verified 3.2\u20135.0s, but option D is wrong "
     '(the answer is B ("right after it touches the blue square"))'),
    ("From <t>7.0</t>s to <t>9.0</t>s. Correct Option: A", "wrong: option A is wrong"),
    ("Correct Option: B", "but it gives no time window"),
])
def test_temporal_mcq_judges_option_and_window_separately(pred, expect):
    assert expect in fb("temporal_mcq", pred, answer_correct=None)


@pytest.mark.parametrize("pred,score,correct,expect", [
    ("<obj>blue square</obj><box>[224, 168, 314, 269]</box>", 0.97, True,
     "fully correct: it names the blue square and its box covers it"),
    ("<obj>blue square</obj><box>[200, 150, 330, 300]</box>", 0.6, True,
     "partly correct: it names the blue square, but its box only roughly covers it (the verified box is "
     "[224, 168, 314, 269] at 0.0s)"),
    ("<obj>red circle</obj><box>[45, 67, 134, 134]</box>", 0.0, False,
     "wrong: it names the red circle, but the answer is the blue square"),
    ("<obj>blue square</obj><box>[0, 0, 40, 40]</box>", 0.0, False, "wrong: its box misses the blue square"),
])
def test_visual_qa_verdicts(pred, score, correct, expect):
    assert expect in fb("visual_qa", pred, answer_correct=correct, answer_score=score)


@pytest.mark.parametrize("score,correct,expect", [
    (0.8, True, 'fully correct: it agrees with the reference answer "three shapes"'),
    (0.3, False, 'partly correct: it only partly agrees with the reference answer "three shapes"'),
    (0.1, False, 'wrong: the reference answer is "three shapes"'),
])
def test_free_form_verdicts(score, correct, expect):
    assert expect in fb("video_freeform", "some shapes", answer_correct=correct, answer_score=score)


def test_unverified_answer_states_the_verified_one():
    text = rule_feedback(request("video_mcq", "B"))                  # answer_correct is None
    assert text == ('The final answer "B" was not checked by the verifier. '
                    'The verified answer is C ("the green star").')


# ---------------------------------------------------------------------------- consistency
def test_inconsistent_reasoning_names_where_it_points():
    text = fb("temporal_qa", "From <t>3.2</t>s to <t>5.0</t>s", answer_correct=False, reasoning_consistent=False,
              consistency_note="the reasoning cites 1s, 2s but the answer is 3.2-5s", issues=["answer"])
    assert "The reasoning does not support the final answer: the reasoning cites 1s, 2s but the answer is " \
           "3.2-5s." in text
    assert "The most likely cause is a drifted final answer" in text


def test_inconsistent_reasoning_without_issue_says_the_answer_drifted():
    text = fb("video_mcq", "A", answer_correct=False, reasoning_consistent=False)
    assert "The reasoning does not support the final answer; it points elsewhere." in text
    assert "the final answer drifted from what the reasoning found" in text


# ---------------------------------------------------------------------------- error causes
def test_time_cause_against_key_frames():
    text = fb("st_freeform", "it stops", answer_correct=False, answer_score=0.0, claimed_times=[3.5, 9.0, 9.5, 9.0],
              issues=["time"])
    assert "The most likely cause is a wrong time span: the reasoning cites 9.0s and 9.5s but the verified key " \
           "frames are at 3.6s and 4.1s." in text


def test_time_cause_without_any_timestamp():
    text = fb("temporal_qa", "From <t>0.5</t>s to <t>2.0</t>s", answer_correct=False, issues=["time"])
    assert "missing temporal evidence: the reasoning cites no timestamp, while the verified window is " \
           "3.2\u20135.0s" in text


def test_wrong_answer_is_blamed_on_grounding_before_the_answer_and_format_flags():
    text = fb("temporal_qa", "From <t>0.5</t>s to <t>2.0</t>s", answer_correct=False, claimed_times=[1.0],
              format_ok=False, format_issues=["reasoning cites fewer than 2 timestamps"],
              issues=["format", "answer", "time"])
    assert "The most likely cause is a wrong time span: the reasoning cites 1.0s" in text
    assert "format" not in text and "drifted" not in text
    # Without a grounding issue the verifier's order stands.
    text = fb("video_mcq", "A", answer_correct=False, format_ok=False, format_issues=["no <think>"],
              issues=["format", "answer"])
    assert "The most likely cause is a format problem: no <think>." in text


def test_correct_answer_with_wrong_times_says_so():
    text = fb("temporal_qa", "From <t>3.2</t>s to <t>5.0</t>s", answer_correct=True, answer_score=1.0,
              reasoning_consistent=True, claimed_times=[2.0, 3.6], issues=["time"])
    assert text.endswith("The answer is right, but there is a wrong time span: the reasoning cites 2.0s but "
                         "the verified window is 3.2\u20135.0s.")


def test_missing_object_is_located_in_pixels():
    text = fb("st_freeform", "it stops", answer_correct=False, answer_score=0.0,
              missing_objects=["red circle"], issues=["object"])
    assert "a missed object: the red circle is never localized in the reasoning (at 3.6s it is at " \
           "[45, 67, 134, 134])" in text


def test_missing_object_normalized_without_frame_size():
    req = request("st_freeform", "it stops", frame_size=None,
                  diagnosis=diag("st_freeform", answer_correct=False, missing_objects=["red circle"],
                                 issues=["object"]))
    assert "(at 3.6s it is at [0.1, 0.2, 0.3, 0.4])" in rule_feedback(req)


def test_unknown_object_lists_the_verified_ones():
    text = fb("st_freeform", "it stops", answer_correct=False, unknown_objects=["green star"],
              missing_objects=["red circle", "blue square"], gt_objects=["red circle", "blue square"],
              issues=["object"])
    assert "the reasoning cites the green star, which is not among the verified objects (red circle and " \
           "blue square)" in text


@pytest.mark.parametrize("score,verb", [(0.05, "misses it"), (0.4, "covers it only loosely")])
def test_box_cause_for_one_object(score, verb):
    text = fb("st_freeform", "it stops", answer_correct=False, claimed_objects=["blue square"],
              gt_objects=["red circle", "blue square"], box_score=score, issues=["box"])
    assert f"a spatial grounding error: the box for the blue square {verb} (box score {score:.2f}) " \
           "(at 4.1s it is at [224, 168, 314, 269])" in text


def test_box_cause_for_several_objects():
    text = fb("st_freeform", "it stops", answer_correct=False, claimed_objects=["red circle", "blue square"],
              gt_objects=["red circle", "blue square"], box_score=0.1, issues=["box", "time"])
    assert "the boxes cited for the red circle and the blue square barely overlap the verified regions " \
           "(box score 0.10)" in text
    assert "time span" not in text                                 # the single most likely cause only


def test_format_cause_lists_the_issues():
    text = fb("video_mcq", "C", answer_correct=True, answer_score=1.0, format_ok=False,
              format_issues=["unbalanced <box> tags", "text after </answer>"], issues=["format"])
    assert text.endswith("The answer is right, but there is a format problem: unbalanced <box> tags; text after "
                         "</answer>.")


# ---------------------------------------------------------------------------- properties
_names = st.sampled_from(["red circle", "blue square", "green star"])
_times = st.lists(st.floats(0, 20, allow_nan=False), max_size=4)


@st.composite
def _diagnoses(draw):
    task = draw(st.sampled_from(TASKS))
    has_answer = draw(st.booleans())
    pred = draw(st.sampled_from(["B", "From <t>1.0</t>s to <t>4.0</t>s", "Correct Option: D", "<obj>red circle</obj>",
                                 "three shapes", ""])) if has_answer else None
    d = Diagnosis(task=task, has_answer=has_answer, truncated=draw(st.booleans()), format_ok=draw(st.booleans()),
                  format_issues=draw(st.lists(st.sampled_from(["unbalanced <box> tags", "no <think>"]), max_size=2)),
                  pred_answer=pred, answer_score=draw(st.floats(0, 1)),
                  answer_correct=draw(st.sampled_from([None, True, False])),
                  reasoning_consistent=draw(st.sampled_from([None, True, False])),
                  consistency_note=draw(st.sampled_from([None, "option A"])),
                  claimed_times=draw(_times), key_times=draw(_times),
                  gt_objects=draw(st.lists(_names, max_size=3)), claimed_objects=draw(st.lists(_names, max_size=3)),
                  missing_objects=draw(st.lists(_names, max_size=2)),
                  unknown_objects=draw(st.lists(_names, max_size=2)),
                  box_score=draw(st.sampled_from([None, 0.0, 0.5])),
                  issues=draw(st.lists(st.sampled_from(ISSUE_KINDS), unique=True)))
    frames = draw(st.sampled_from([[], [(3.6, {"red circle": [[0.1, 0.2, 0.3, 0.4]]})]]))
    return request(task, pred, diagnosis=d, key_frames=frames,
                   frame_size=draw(st.sampled_from([None, (448, 336)])))


@settings(max_examples=300, deadline=None)
@given(_diagnoses())
def test_any_diagnosis_gives_two_to_four_deterministic_sentences(req):
    text = rule_feedback(req)
    assert 2 <= len(sentences(text)) <= 4, text
    assert text == rule_feedback(req)
    assert len(text) <= 1000


def test_rule_judge_batch_keeps_order_and_counts():
    reqs = [request("video_mcq", p, diagnosis=diag("video_mcq", pred_answer=p, answer_correct=p == "C"))
            for p in ("C", "A")]
    batch = RuleJudge().judge(reqs)
    assert batch.feedback == [rule_feedback(r) for r in reqs]
    assert batch.source == ["rule", "rule"]
    assert batch.metrics["judge/samples"] == 2 and batch.metrics["judge/rule"] == 2


@pytest.mark.parametrize("task,kw,match", [
    ("video_mcq", {"answer": "E"}, "one of the 4 option letters"),
    ("temporal_qa", {"window": (5.0, 3.2)}, "0 <= start <= end"),
    ("st_freeform", {"key_frames": [(1.0, {"red circle": [[0.1, 0.2, 0.3]]})]}, r"\[x1, y1, x2, y2\] boxes"),
    ("video_freeform", {"frame_size": (0, 336)}, "frame_size"),
])
def test_request_rejects_data_the_judges_cannot_state(task, kw, match):
    with pytest.raises(ValueError, match=match):
        request(task, **kw)


def test_request_rejects_an_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'audio_qa'"):
        JudgeRequest(task="audio_qa", question="q", answer="a", output="o", diagnosis=diag("audio_qa"))
