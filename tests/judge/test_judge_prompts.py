"""The prompts match visd Appendix G: G.1 and G.2 against the paper's text; the request bodies
against golden files as a regression check.

The golden files are the exact requests the judge endpoint receives. This module only reads them;
after an intended prompt change rewrite them with
    .venv/bin/python tests/judge/regen_golden.py
and review the diff.
"""
import json
import re
from pathlib import Path

import pytest

from judge_cases import SAMPLES, diag, request
from regen_golden import GOLDEN, KEY_ENV, render, sent_requests
from visd_core.judge.evidence import keyframe_evidence, standard_answer
from visd_core.judge.prompts import (MISSING_ANSWER, NO_ANSWER, SYSTEM_PROMPT, TASK_LABELS, TASK_NOTES,
                                     WITH_EVIDENCE, WITHOUT_EVIDENCE, build_prompts, question_text)

ROOT = Path(__file__).resolve().parents[2]


def _paper() -> Path | None:
    for p in (ROOT / "shared/papers/visd.txt", ROOT.parent / "shared/papers/visd.txt"):
        if p.is_file():
            return p
    return None


@pytest.mark.skipif(_paper() is None, reason="papers/visd.txt is not next to this checkout")
def test_system_prompt_is_appendix_g1_verbatim():
    text = _paper().read_text()
    block = text[text.index("[prompt]\n") + len("[prompt]\n"):text.index("G.2 User Prompt Assembly")]
    # The paper lists G.1's conditional parts after "If ...:" labels; the code appends the chosen ones.
    paper = [ln for ln in block.strip().splitlines() if not ln.startswith("If ")]
    ours = (SYSTEM_PROMPT + WITH_EVIDENCE + WITHOUT_EVIDENCE + MISSING_ANSWER).splitlines()
    # The text extraction of the paper dropped the apostrophes ("student's" -> "students").
    assert [ln.replace("'", "") for ln in ours] == paper


@pytest.mark.parametrize("has_evidence,has_answer", [(True, True), (False, True), (True, False), (False, False)])
def test_system_prompt_variants(has_evidence, has_answer):
    req = request("st_freeform", "it stops" if has_answer else None,
                  key_frames=[(3.6, {"red circle": [[0.1, 0.2, 0.3, 0.4]]})] if has_evidence else [])
    system, user = build_prompts(req)
    assert system.startswith(SYSTEM_PROMPT)
    assert (WITH_EVIDENCE in system) == has_evidence and (WITHOUT_EVIDENCE in system) == (not has_evidence)
    assert (MISSING_ANSWER in system) == (not has_answer)
    assert ("- Student final answer: null (no <answer> tag found)" in user) == (not has_answer)
    assert ("- Keyframe object evidence: null" in user) == (not has_evidence)


def test_final_answer_is_the_verifiers_reading():
    req = request("video_mcq", "B", "<think>a</think>", diagnosis=diag("video_mcq", pred_answer="(B)"))
    system, user = build_prompts(req)
    assert "- Student final answer: (B)\n" in user and MISSING_ANSWER not in system
    req = request("video_mcq", "B", diagnosis=diag("video_mcq", has_answer=False, truncated=True))
    system, user = build_prompts(req)
    assert "- Student final answer: null (no <answer> tag found)\n" in user and MISSING_ANSWER in system


def test_evidence_and_standard_answers():
    tq = SAMPLES["temporal_mcq"]
    assert keyframe_evidence(tq) == [{"time": 3.6, "objects": {"red circle": [[45, 67, 134, 134]],
                                                                "blue square": [[224, 168, 314, 269]]}}]
    assert standard_answer(tq) == 'B ("right after it touches the blue square")\nFrom <t>3.2</t>s to <t>5.0</t>s'
    assert standard_answer(SAMPLES["visual_qa"]) == "<obj>blue square</obj><box>[224, 168, 314, 269]</box>"
    assert keyframe_evidence(SAMPLES["video_mcq"]) is None
    st = SAMPLES["st_freeform"]
    assert [e["time"] for e in keyframe_evidence(st)] == [3.6, 4.1]     # sorted by time


# ---------------------------------------------------------------------------- G.2 against the paper
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")        # {task}; not the literal "{concise diagnostic feedback}"


def _g2_template() -> str:
    text = _paper().read_text()
    start = text.index("G.2 User Prompt Assembly") + len("G.2 User Prompt Assembly")
    return text[start:text.index("Appendix H", start)].strip()


def _literal(text: str) -> str:
    # The text extraction of the paper dropped the apostrophes ("students reasoning").
    return "".join(re.escape(ch) + ("'?" if ch.isalpha() else "") for ch in text)


def _g2_fields(template: str, user: str) -> dict[str, str]:
    """The placeholder values of `user` read against the template; AssertionError if any text
    outside the placeholders differs from the paper's."""
    parts, pos = [], 0
    for m in _PLACEHOLDER.finditer(template):
        parts += [_literal(template[pos:m.start()]), f"(?P<{m.group(1)}>.*?)"]
        pos = m.end()
    parts.append(_literal(template[pos:]))
    m = re.fullmatch("".join(parts), user, re.DOTALL)
    assert m, f"user prompt does not follow the G.2 template:\n{user}"
    return m.groupdict()


def _g2_cases():
    yield from SAMPLES.items()
    yield "temporal_mcq_normalized_boxes", request("temporal_mcq", "Correct Option: B", frame_size=None)
    yield "st_freeform_no_evidence", request("st_freeform", "it stops", key_frames=[])


@pytest.mark.skipif(_paper() is None, reason="papers/visd.txt is not next to this checkout")
@pytest.mark.parametrize("name,req", list(_g2_cases()))
def test_user_prompt_is_appendix_g2_verbatim_outside_its_fields(name, req):
    template = _g2_template()
    assert set(_PLACEHOLDER.findall(template)) == {
        "task", "question", "standard_answer", "keyframe_object_evidence_json_or_null",
        "model_answer_or_null_no_answer_tag_found", "student_output"}
    _, user = build_prompts(req)
    # Our one addition (prompts.py docstring): the task notes close the reference-context section.
    notes = "".join(f"{n}\n" for n in TASK_NOTES[req.task])
    assert f"\n{notes}## Student Submission\n" in user
    assert user.endswith("\n")
    fields = _g2_fields(template, user.replace(notes, "", 1)[:-1])
    evidence = keyframe_evidence(req)
    d = req.diagnosis
    assert fields == {
        "task": TASK_LABELS[req.task],
        "question": question_text(req),
        "standard_answer": standard_answer(req),
        "keyframe_object_evidence_json_or_null": json.dumps(evidence, ensure_ascii=False) if evidence else "null",
        "model_answer_or_null_no_answer_tag_found": d.pred_answer if d.has_answer else NO_ANSWER,
        "student_output": req.output,
    }, name
    assert fields["question"].startswith(req.question) and fields["student_output"] == req.output


@pytest.mark.skipif(_paper() is None, reason="papers/visd.txt is not next to this checkout")
def test_g2_check_rejects_a_reworded_prompt():
    _, user = build_prompts(SAMPLES["video_mcq"])
    for old, new in [("Please judge the following sample.", "Please judge this sample."),
                     ("- Student final answer: ", "- Final answer: "),
                     ('"feedback": "{concise diagnostic feedback}"', '"feedback": "{feedback}"')]:
        assert old in user
        with pytest.raises(AssertionError, match="does not follow the G.2 template"):
            _g2_fields(_g2_template(), user.replace(old, new)[:-1])


# ---------------------------------------------------------------------------- golden request bodies
def test_request_bodies_match_golden_files(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-golden")
    for name, sent in sent_requests().items():
        assert sent["path"] == "/v1/chat/completions"
        assert sent["headers"]["Authorization"] == "Bearer sk-golden"
        assert sent["body"]["messages"][1]["content"] == build_prompts(SAMPLES[name])[1]
        path = GOLDEN / f"{name}.txt"
        assert path.is_file(), f"missing golden file {path}; run tests/judge/regen_golden.py"
        assert render(sent["body"]) == path.read_text(), \
            f"request body for {name} differs from {path}; if intended, run tests/judge/regen_golden.py and review"
