"""The deterministic rule judge: Appendix G-style feedback from the verifier's own diagnosis.

The embedded default judge and the HTTP judge's fallback. From a `Diagnosis` and the hidden
evidence it writes 2-3 sentences, in the order G.1 asks for:
  1. the answer verdict (fully correct / partly correct / wrong), naming the problematic part,
     or, without a closed <answer>, that the final answer was not produced and the response may
     have been truncated;
  2. whether the reasoning supports the answer (when the verifier could tell);
  3. the single most likely error cause, `Diagnosis.main_issue()` (but a grounding issue before
     the answer and format flags when the answer is wrong), stated against the hidden evidence
     ("the reasoning cites 2.0s but the verified window is 3.2–5.0s").
Same inputs, same words: no randomness, no clock. The answer's window and option are read with
the verifier's own parser and IoU (rewards/parse.py, rewards/iou.py), so feedback never calls right
what the reward scored wrong (an inverted window, bare numbers without <t> tags, a lower-case letter).
"""
from __future__ import annotations

import re
import time

from visd_core.judge.base import Judge, JudgeBatch, JudgeRequest
from visd_core.judge.evidence import (fmt_sec, fmt_window, object_location, option_label,
                                      standard_answer)
from visd_core.rewards.diagnosis import Diagnosis
from visd_core.rewards.iou import interval_iou
from visd_core.rewards.parse import parse_correct_option, parse_interval, parse_letter

FULL_IOU = 0.8        # a window or box this close (IoU) is "fully correct"; between the verifier's
                      # pass mark (answer_correct, IoU >= 0.5) and this it is "partly correct"
LOOSE_BOX = 0.3       # box score below which a box "misses" its object rather than "covers it loosely"
PARTIAL_TEXT = 0.25   # free-form answer score (ROUGE) from which a wrong answer is "partly correct"
_QUOTE_CHARS = 120    # longest reference answer quoted in feedback
GROUNDING = ("time", "object", "box")     # Diagnosis issue kinds that say where the reasoning looked
KEY_FRAME_TOL = 1.0   # seconds from the nearest key frame beyond which a cited time is named as off
                      # (the default temporal gate τ of the thinking-spatial reward)

_OBJ = re.compile(r"<obj>\s*(.*?)\s*</obj>", re.DOTALL)


# ---------------------------------------------------------------------------- reading the answer
def _pred_window(text: str) -> tuple[float, float] | None:
    """The answer's window as the verifier reads it (`answer.interval_reward`): as written, so an
    inverted one stays inverted; bare numbers without <t> tags are no window."""
    return parse_interval(text)


def _pred_option(text: str) -> str | None:
    """The chosen letter as the verifier reads it (`answer.chosen_option`)."""
    return parse_correct_option(text) or parse_letter(text)


def _drift(pred: tuple[float, float], gt: tuple[float, float]) -> str:
    """How a window is off: too early / too late / too broad / too narrow / slightly shifted."""
    tol = max(0.25, 0.1 * (gt[1] - gt[0]))
    early_start, late_start = pred[0] < gt[0] - tol, pred[0] > gt[0] + tol
    early_end, late_end = pred[1] < gt[1] - tol, pred[1] > gt[1] + tol
    if early_start and late_end:
        return "too broad"
    if late_start and early_end:
        return "too narrow"
    if early_start or early_end:
        return "too early"
    if late_start or late_end:
        return "too late"
    return "slightly shifted"


def _window_part(pred: tuple[float, float] | None, gt: tuple[float, float]) -> tuple[bool, str]:
    """(window fully right?, the phrase naming how it compares with the verified window)."""
    if pred is None:
        return False, f"it gives no time window (the verified window is {fmt_window(gt)})"
    if pred[1] < pred[0]:            # the verifier scores it 0 (iou.py): it must not read as a match
        return False, f"the window {fmt_window(pred)} is inverted (it ends before it starts) and cannot match " \
                      f"the verified {fmt_window(gt)}"
    iou = interval_iou(pred, gt)     # the verifier's IoU: a zero-length window overlaps nothing
    if iou >= FULL_IOU:
        return True, f"the window {fmt_window(pred)} matches the verified {fmt_window(gt)}"
    if iou > 0:
        return False, f"the window {fmt_window(pred)} overlaps the verified {fmt_window(gt)} but is {_drift(pred, gt)}"
    return False, f"the window {fmt_window(pred)} is {_drift(pred, gt)} and misses the verified {fmt_window(gt)}"


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return f'"{text[:_QUOTE_CHARS]}{"..." if len(text) > _QUOTE_CHARS else ""}"'


def _join(items: list[str]) -> str:
    if len(items) > 3:
        items = items[:3] + [f"{len(items) - 3} more"]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _times(ts: list[float]) -> str:
    return _join([f"{fmt_sec(t)}s" for t in ts])


# ---------------------------------------------------------------------------- 1. verdict
def _verdict(req: JudgeRequest) -> tuple[str, str]:
    """(sentence, level) with level one of full / partial / wrong / unknown."""
    d, task = req.diagnosis, req.task
    pred = d.pred_answer or ""
    window = req.window or d.gt_window
    if task == "temporal_mcq" and window is not None:
        return _verdict_temporal_mcq(req, pred, window)
    if d.answer_correct is None:
        return f"The final answer {_quote(pred)} was not checked by the verifier.", "unknown"
    if d.answer_correct:
        # A window or box passes the verifier from IoU 0.5 but is fully correct only when close.
        level = "partial" if task in ("temporal_qa", "visual_qa") and d.answer_score < FULL_IOU else "full"
    elif task in ("st_freeform", "video_freeform") and d.answer_score >= PARTIAL_TEXT:
        level = "partial"
    else:
        level = "wrong"
    head = {"full": "The final answer is fully correct", "partial": "The final answer is partly correct",
            "wrong": "The final answer is wrong"}[level]

    if task == "temporal_qa" and window is not None:
        return f"{head}: {_window_part(_pred_window(pred), window)[1]}.", level
    if task == "visual_qa":
        named = _OBJ.search(pred)
        loc = object_location(req, req.answer)
        where = f" (the verified box is {loc[1]} at {fmt_sec(loc[0])}s)" if loc else ""
        if level == "full":
            return f"{head}: it names the {req.answer} and its box covers it.", level
        if named and named.group(1).lower() != req.answer.lower():
            return f"{head}: it names the {named.group(1)}, but the answer is the {req.answer}{where}.", level
        if level == "partial":
            return f"{head}: it names the {req.answer}, but its box only roughly covers it{where}.", level
        return f"{head}: its box misses the {req.answer}{where}.", level
    if task in ("video_mcq", "temporal_mcq"):
        gold = option_label(req.options, req.answer)
        if level == "full":
            return f"{head}: option {gold}.", level
        chose = _pred_option(pred)
        return f"{head}: it chose {f'option {chose}' if chose else 'no valid option'}, but the answer is {gold}.", level
    ref = _quote(standard_answer(req))
    text = {"full": f"it agrees with the reference answer {ref}",
            "partial": f"it only partly agrees with the reference answer {ref}",
            "wrong": f"the reference answer is {ref}"}[level]
    return f"{head}: {text}.", level


def _verdict_temporal_mcq(req: JudgeRequest, pred: str, window: tuple[float, float]) -> tuple[str, str]:
    # Two required parts judged separately (G.1 "For structured answers, say which part is wrong").
    gold = option_label(req.options, req.answer)
    chose = _pred_option(pred)
    # The verifier scores the letter (its `answer_correct`); the parse only names the chosen option.
    option_ok = req.diagnosis.answer_correct if req.diagnosis.answer_correct is not None else chose == req.answer
    window_ok, window_text = _window_part(_pred_window(pred), window)
    option_text = (f"option {gold} is right" if option_ok else
                   f"{f'option {chose}' if chose else 'no valid option'} is wrong (the answer is {gold})")
    if option_ok and window_ok:
        return f"The final answer is fully correct: {option_text} and {window_text}.", "full"
    if option_ok or window_ok:
        return f"The final answer is partly correct: {option_text}, but {window_text}." if option_ok else \
            f"The final answer is partly correct: {window_text}, but {option_text}.", "partial"
    return f"The final answer is wrong: {option_text}, and {window_text}.", "wrong"


# ---------------------------------------------------------------------------- 2. consistency
def _consistency(d: Diagnosis, level: str) -> str | None:
    if d.reasoning_consistent is None:
        return None
    if not d.reasoning_consistent:
        # The verifier's note is a whole clause ("the reasoning cites 2s but the answer is 3.2-5s").
        return ("The reasoning does not support the final answer"
                + (f": {d.consistency_note}." if d.consistency_note else "; it points elsewhere."))
    return "The reasoning broadly supports it." if level == "full" else "The reasoning is consistent with this answer."


# ---------------------------------------------------------------------------- 3. error cause
def _time_detail(req: JudgeRequest) -> tuple[str, str]:
    d = req.diagnosis
    window = req.window or d.gt_window
    keys = [t for t, _ in req.key_frames] or list(d.key_times)
    target = (f"the verified window is {fmt_window(window)}" if window else
              f"the verified key frames are at {_times(keys)}" if keys else "")
    if not d.claimed_times:
        return "missing temporal evidence", "the reasoning cites no timestamp" + (f", while {target}" if target else "")
    claimed = list(dict.fromkeys(d.claimed_times))
    if window:
        off = [t for t in claimed if not window[0] <= t <= window[1]]
    elif keys:
        dist = {t: min(abs(t - k) for k in keys) for t in claimed}
        off = [t for t in claimed if dist[t] > KEY_FRAME_TOL] or [max(claimed, key=dist.get)]
    else:
        off = []
    if not off or not target:
        return "a wrong time span", f"the cited times {_times(d.claimed_times)} do not pin down the verified moment"
    return "a wrong time span", f"the reasoning cites {_times(off)} but {target}"


def _where(req: JudgeRequest, name: str) -> str:
    loc = object_location(req, name)
    return f" (at {fmt_sec(loc[0])}s it is at {loc[1]})" if loc else ""


def _object_detail(req: JudgeRequest) -> tuple[str, str]:
    d = req.diagnosis
    if d.unknown_objects:            # naming a wrong object is the stronger error: say it first
        known = f" ({_join(d.gt_objects)})" if d.gt_objects else ""
        detail = f"the reasoning cites the {d.unknown_objects[0]}, which is not among the verified objects{known}"
        return "a wrong object", detail
    if d.missing_objects:
        name = d.missing_objects[0]
        return "a missed object", f"the {name} is never localized in the reasoning{_where(req, name)}"
    return "a wrong object", "the reasoning does not localize the verified objects"


def _box_detail(req: JudgeRequest) -> tuple[str, str]:
    d = req.diagnosis
    gt = d.gt_objects or sorted({n for _, objs in req.key_frames for n in objs})
    names = list(dict.fromkeys(o for o in d.claimed_objects if o in gt)) or list(gt)
    score = f" (box score {d.box_score:.2f})" if d.box_score is not None else ""
    loose = d.box_score is not None and d.box_score >= LOOSE_BOX
    if len(names) == 1:
        verb = "covers it only loosely" if loose else "misses it"
        where = "" if req.task == "visual_qa" else _where(req, names[0])     # visual QA's verdict gave it
        return "a spatial grounding error", f"the box for the {names[0]} {verb}{score}{where}"
    objs = " and ".join(f"the {n}" for n in names[:2]) if names else "the cited objects"
    return "a spatial grounding error", f"the boxes cited for {objs} barely overlap the verified regions{score}"


def _format_detail(d: Diagnosis) -> tuple[str, str]:
    if d.format_issues:              # the verifier's own words, e.g. "unbalanced <box> tags"
        return "a format problem", "; ".join(d.format_issues[:3])
    return "a format problem", "the output does not follow the <think> then <answer> format"


def _cause(req: JudgeRequest, kinds: tuple[str, ...], answer_ok: bool) -> tuple[str, str] | None:
    """(category, detail) of the single most likely error cause among `kinds`: the verifier's
    `main_issue()` order, except that a not fully correct answer with a grounding issue is blamed
    on the grounding. Its "answer" and "format" flags describe the symptom; G.1's causes are where
    the reasoning looked ("the wrong event, time span, or object")."""
    d = req.diagnosis
    ordered = [k for k in d.issues if k in kinds]
    grounding = [k for k in ordered if k in GROUNDING]
    kind = grounding[0] if grounding and not answer_ok else ordered[0] if ordered else None
    if kind is None:
        return None
    if kind == "format":
        return _format_detail(d)
    if kind == "answer":
        return ("a drifted final answer", "the reasoning was mostly on the right track, but the final answer "
                "overreached or stated the wrong thing")
    return {"time": _time_detail, "object": _object_detail, "box": _box_detail}[kind](req)


# ---------------------------------------------------------------------------- feedback
def rule_feedback(req: JudgeRequest) -> str:
    """2-3 sentences of Appendix G-style feedback for one rollout."""
    d = req.diagnosis
    if not d.has_answer:
        cut = ("it was cut off, most likely because the thinking section was too long" if d.truncated else
               "it may have been truncated because the thinking section was too long")
        first = ("The final answer was not produced: the output has no closed <answer> block, so the response "
                 f"is incomplete and {cut}.")
        # The missing answer is itself the format/answer problem; name a grounding cause if there is one.
        cause = _cause(req, GROUNDING, answer_ok=False)
        second = (f"Its reasoning also shows {cause[0]}: {cause[1]}." if cause else
                  "The reasoning should reach a conclusion sooner and close with a final <answer> block.")
        return f"{first} {second}"

    verdict, level = _verdict(req)
    sentences = [verdict]
    consistency = _consistency(d, level)
    if consistency:
        sentences.append(consistency)
    cause = _cause(req, ("format", "answer", *GROUNDING), answer_ok=level == "full")
    if cause and level == "full":
        sentences.append(f"The answer is right, but there is {cause[0]}: {cause[1]}.")
    elif cause:
        sentences.append(f"The most likely cause is {cause[0]}: {cause[1]}.")
    elif level in ("partial", "wrong"):
        sentences.append("The most likely cause is that the final answer drifted from what the reasoning found."
                         if d.reasoning_consistent is False else
                         "The most likely cause is reasoning too broad or too thin in evidence to support such a "
                         "specific answer.")
    elif len(sentences) == 1:
        sentences.append("The reasoning broadly supports it." if level == "full" else
                         f"The verified answer is {'; '.join(standard_answer(req).splitlines())}.")
    return " ".join(sentences)


class RuleJudge(Judge):
    """The offline judge: `rule_feedback` for every request (the embedded default)."""

    def judge(self, requests: list[JudgeRequest]) -> JudgeBatch:
        t0 = time.perf_counter()
        feedback = [rule_feedback(r) for r in requests]
        n = len(requests)
        return JudgeBatch(feedback=feedback, source=["rule"] * n,
                          metrics={"judge/samples": n, "judge/rule": n, "judge/time_s": time.perf_counter() - t0})
