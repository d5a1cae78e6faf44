"""Hand-made judge requests shared by the judge tests: one realistic sample per task type."""
from __future__ import annotations

import re

from visd_core.judge import JudgeRequest
from visd_core.rewards.diagnosis import Diagnosis

FRAME = (448, 336)        # the resized frame the student saw (width, height)
RED = [0.1, 0.2, 0.3, 0.4]
BLUE = [0.5, 0.5, 0.7, 0.8]

_OPTIONS = ["A. before the blue square appears", "B. right after it touches the blue square",
            "C. at the very end", "D. it never moves"]


def diag(task: str, **kw) -> Diagnosis:
    """A diagnosis of an answered, well-formed rollout; keywords override."""
    base = dict(task=task, has_answer=True, truncated=False, format_ok=True)
    base.update(kw)
    return Diagnosis(**base)


def request(task: str, pred: str | None = "B", think: str = "<think>reasoning</think>",
            diagnosis: Diagnosis | None = None, **kw) -> JudgeRequest:
    """A request of `task` with the standard evidence of that task; `pred` is the <answer> text
    (None: no answer block), keywords override request fields."""
    fields = dict(
        temporal_qa=dict(question="When does the red circle start moving right?", answer="",
                         window=(3.2, 5.0), key_frames=[(3.6, {"red circle": [RED]})]),
        temporal_mcq=dict(question="When does the red circle change direction?", answer="B",
                          options=list(_OPTIONS), window=(3.2, 5.0),
                          key_frames=[(3.6, {"red circle": [RED], "blue square": [BLUE]})]),
        visual_qa=dict(question="Where is the blue square?", answer="blue square",
                       key_frames=[(0.0, {"blue square": [BLUE]})]),
        st_freeform=dict(question="What does the red circle do after meeting the blue square?",
                         answer="it bounces back to the left",
                         key_frames=[(4.1, {"blue square": [BLUE]}), (3.6, {"red circle": [RED]})]),
        video_mcq=dict(question="Which shape moves fastest?", answer="C",
                       options=["A. the red circle", "B. the blue square", "C. the green star", "D. none"]),
        video_freeform=dict(question="How many shapes are in the video?", answer="three shapes"),
    )[task]
    fields.update(frame_size=FRAME)
    fields.update(kw)
    output = think + (f"<answer>{pred}</answer>" if pred is not None else "")
    if diagnosis is None:
        diagnosis = diag(task, has_answer=pred is not None, pred_answer=pred)
    return JudgeRequest(task=task, output=output, diagnosis=diagnosis, **fields)


# One realistic rollout per task type (the golden request bodies), plus a truncated one.
SAMPLES = {
    "temporal_qa": request(
        "temporal_qa", "From <t>2.8</t>s to <t>5.0</t>s",
        "<think>The <obj>red circle</obj><box>[45, 67, 134, 134]</box>at<t>3.6</t>s begins to move right "
        "and keeps moving until <t>5.0</t>s.</think>"),
    "temporal_mcq": request(
        "temporal_mcq", "From <t>3.4</t>s to <t>5.0</t>s. Correct Option: B",
        "<think>At <t>3.6</t>s the <obj>red circle</obj><box>[45, 67, 134, 134]</box> touches the "
        "<obj>blue square</obj><box>[224, 168, 314, 269]</box> and reverses.</think>"),
    "visual_qa": request(
        "visual_qa", "<obj>blue square</obj><box>[220, 170, 310, 270]</box>",
        "<think>The <obj>blue square</obj><box>[220, 170, 310, 270]</box>at<t>0.0</t>s sits lower right.</think>"),
    "st_freeform": request(
        "st_freeform", "It bounces off to the left.",
        "<think>At <t>3.6</t>s the <obj>red circle</obj><box>[45, 67, 134, 134]</box> meets the "
        "<obj>blue square</obj><box>[224, 168, 314, 269]</box>at<t>4.1</t>s, then heads left.</think>"),
    "video_mcq": request("video_mcq", "C", "<think>The green star crosses the frame in one second.</think>"),
    "video_freeform": request("video_freeform", "There are three shapes.",
                              "<think>I see a red circle, a blue square and a green star.</think>"),
    "temporal_qa_no_answer": request(
        "temporal_qa", None,
        "<think>The <obj>red circle</obj><box>[45, 67, 134, 134]</box>at<t>2.0</t>s is still; it then moves "
        "and moves and moves"),
}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def http_cfg(url: str, key_env: str = "VISD_TEST_JUDGE_KEY", **kw):
    """An HTTP judge config for the loopback fake server: short timeouts, a few retries."""
    from visd_core.config import Judge as JudgeConfig
    base = dict(kind="http", base_url=url, model="judge-test", api_key_env=key_env, timeout_s=0.5,
                deadline_s=5.0, max_retries=2, concurrency=8)
    base.update(kw)
    return JudgeConfig(**base)


def marked_case(case: str):
    """A request whose question carries the fake server's script marker (fake_openai.py)."""
    return request("video_mcq", "A", question=f"Which shape moves fastest? {case}")
