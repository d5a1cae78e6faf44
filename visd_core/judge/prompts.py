"""The judge prompts of visd Appendix G: the G.1 system prompt verbatim, the G.2 user prompt.

G.1 is a fixed instruction followed by two conditional parts, chosen per sample: whether
key-frame evidence is provided, and whether the student produced a final <answer>. The text is
the paper's with the apostrophes restored ("student's", lost in the text extraction of
papers/visd.txt); tests/judge/test_judge_prompts.py checks it against the paper line by line.

G.2 adds, inside its "Task And Reference Context" section, short task-aware notes (temporal
window, temporal MCQ, visual QA, grounded free-form, general MCQ, general free-form) that tell the
judge how the standard answer of that task is written and what "partly correct" means for it.
"""
from __future__ import annotations

import json

from visd_core.judge.base import JudgeRequest
from visd_core.judge.evidence import keyframe_evidence, standard_answer

SYSTEM_PROMPT = """\
## Role
You are a strict video and image QA judge.
## Mission
You are judging a student model's response. Your feedback will be given to a teacher model, which will use it to better guide the student model. Judge whether the student's final answer is correct, whether the student's reasoning broadly supports that final answer, and what the single most likely high-level source of error is when the response is not fully correct.
## Input Boundaries
- Use only the information provided in the prompt.
- You do not see the original video frames directly.
- Do not pretend to verify frame-by-frame visual alignment that is not supported by the provided text or hidden grounding evidence.
- For structured answers, compare the provided fields against the reference answer and grounding evidence when available.
- Treat semantically equivalent natural-language answers as correct even if the wording differs.
## Output Format
- Return strict JSON only with key: feedback.
- Do not return markdown, prose outside JSON, or extra keys.
## Feedback Requirements
- The feedback should be concise, factual, correction-oriented, and usually two to four sentences.
- Mention only the issues that actually appear; do not give an exhaustive recap.
- If the response is fully correct and no clear issue is observed, provide a brief positive feedback sentence stating that the final answer is correct and the reasoning broadly supports it.
## Evaluation Focus
1. Answer diagnosis.
Say whether the student final answer is fully correct, partly correct, or wrong. Briefly name the problematic part. For natural-language answers, focus on semantic meaning rather than exact wording. For structured answers, say which part is wrong or missing.
2. Reasoning-versus-answer consistency.
Judge whether the student's reasoning broadly supports the final answer. If the reasoning points to one event, object, text clue, time range, or spatial reference but the final answer states another, say so. If the reasoning is too weak, too broad, or too incomplete to justify the final answer, say that clearly.
3. High-level error cause.
When the response is not fully correct, pick the single most likely high-level cause and mention it briefly. Prefer one of these categories: the reasoning focused on the wrong event, time span, or object; the reasoning was too broad or lacked enough evidence to support such a specific answer; the reasoning was mostly on the right track but the final answer overreached, drifted, or stated the wrong thing; or the output was incomplete and never produced a real final answer. Do not invent fine-grained step-by-step visual mistakes when they are not well supported by the text.
## Task
Compare the verified answer against the student's final answer and reasoning text, then return the feedback JSON.
"""
# G.1's conditional parts, appended in this order.
WITH_EVIDENCE = "Hidden grounding evidence may be provided in the user prompt.\n"
WITHOUT_EVIDENCE = "No hidden grounding evidence is required for this sample.\n"
MISSING_ANSWER = (
    "The student output does not contain a final <answer> or </answer> tag. You must still analyze the "
    "student's reasoning text and provide corrective feedback. In the feedback, explicitly point out that the "
    "final answer was not produced and that the response may have been truncated because the thinking section "
    "was too long. Treat the missing final answer as an incomplete response.\n")

NO_ANSWER = "null (no <answer> tag found)"     # G.2 {model_answer_or_null_no_answer_tag_found}

# G.2 "Task type" as the STGR data names each task (visd_core.data.schema.TASKS -> label).
TASK_LABELS = {
    "temporal_qa": "temporal QA",
    "temporal_mcq": "temporal QA (MCQ)",
    "visual_qa": "visual QA",
    "st_freeform": "temporal-spatial free-form QA",
    "video_mcq": "General video QA MCQ",
    "video_freeform": "General video QA Free-form",
}

_TEMPORAL_WINDOW_NOTES = (
    "- The standard answer is the verified temporal window; the student's final answer is a proposed window "
    "written as `From <t>start</t>s to <t>end</t>s`.",
    "- Judge the window strictly by its overlap with the verified window: say whether it matches or is too "
    "early, too late, too broad, too narrow, or on the wrong event. Call it fully correct only when it closely "
    "matches; a strong overlap on the same event is partly correct; little or no overlap is wrong.",
    "- Then use the reasoning to say why: it tracked the wrong event, tracked the right event but set the "
    "boundaries badly, or was too vague to support a precise interval.",
)
TASK_NOTES = {
    "temporal_qa": _TEMPORAL_WINDOW_NOTES,
    "temporal_mcq": (
        "- The answer has two required parts: the option (first line of the standard answer) and the temporal "
        "window (second line). The student writes `From <t>start</t>s to <t>end</t>s` and `Correct Option: X`, "
        "possibly in a different textual form.",
        "- Judge the option and the window separately and strictly: a correct option never excuses a wrong or "
        "missing window, nor the reverse. If exactly one part is right, the answer is partly correct; name the "
        "wrong part.",
        "- Judge the window by its overlap with the verified window, and use the reasoning to explain how the "
        "student reached that option and that window.",
    ),
    "visual_qa": (
        "- The standard answer is an object with its box, `<obj>name</obj><box>[x1, y1, x2, y2]</box>`: integer "
        "pixels of the frame the student saw, or fractions of its width and height when written as decimals.",
        "- Judge whether the student's final answer names the right object and whether its box plausibly covers "
        "the same region; a right object with a poorly placed box is partly correct.",
        "- If the reasoning localizes a different object or region than the final answer, say so briefly.",
    ),
    "st_freeform": (
        "- The standard answer is free-form text; judge it by meaning, not wording.",
        "- The reasoning should cite objects, boxes and times. Use the keyframe object evidence (a list of "
        "`{time, objects}` entries, where `objects` maps object names to boxes) to check whether it points to "
        "the right time, object and region.",
    ),
    "video_mcq": (
        "- The standard answer is the correct option letter; the student's final answer should be one letter.",
        "- Judge whether the chosen option is correct and whether the reasoning supports that choice. Do not "
        "require time windows or boxes unless the student uses them.",
    ),
    "video_freeform": (
        "- The standard answer is free-form text; judge it by meaning, not wording.",
        "- Judge whether the student's final answer actually answers the question and whether the reasoning "
        "supports it.",
    ),
}

def system_prompt(has_evidence: bool, has_answer: bool) -> str:
    """G.1 for one sample: the fixed text, then the evidence line, then the missing-answer block."""
    return (SYSTEM_PROMPT + (WITH_EVIDENCE if has_evidence else WITHOUT_EVIDENCE)
            + ("" if has_answer else MISSING_ANSWER))


def question_text(req: JudgeRequest) -> str:
    """The question as the student saw it: MCQ options follow it, one per line."""
    return "\n".join([req.question, *req.options]) if req.options else req.question


def user_prompt(req: JudgeRequest) -> str:
    """G.2, with the task-aware notes at the end of the reference context."""
    evidence = keyframe_evidence(req)
    d = req.diagnosis                            # the verifier's reading of the final answer
    lines = [
        "Please judge the following sample.",
        "## Task And Reference Context",
        f"- Task type: {TASK_LABELS[req.task]}",
        f"- Question: {question_text(req)}",
        f"- Standard answer: {standard_answer(req)}",
        f"- Keyframe object evidence: {json.dumps(evidence, ensure_ascii=False) if evidence else 'null'}",
        "- Keyframe object evidence is hidden grounding reference. Use it only to judge whether the student's "
        "reasoning points to the right time, object, and spatial region.",
        *TASK_NOTES[req.task],
        "## Student Submission",
        f"- Student final answer: {d.pred_answer if d.has_answer and d.pred_answer is not None else NO_ANSWER}",
        f"- Student full output: {req.output}",
        "## Required Output",
        "{",
        '"feedback": "{concise diagnostic feedback}"',
        "}",
    ]
    return "\n".join(lines) + "\n"


def build_prompts(req: JudgeRequest) -> tuple[str, str]:
    """(system prompt, user prompt) for one request; whether a final answer exists is the verifier's
    call (`Diagnosis.has_answer`), so both judges and the reward agree on it."""
    return system_prompt(bool(req.key_frames), req.diagnosis.has_answer), user_prompt(req)
