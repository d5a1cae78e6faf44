"""Corrupted grounded reasoning, for the teacher-view examples of the SFT mix.

A model trained from scratch has never read a hindsight block, so its teacher view would be noise.
The embedded default's SFT therefore also shows the teacher's view: the prompt with the hidden
evidence and the rule judge's feedback on a *corrupted* version of the reasoning (wrong times,
shifted boxes, a wrong answer, or a cut-off response), followed by the correct grounded target.
The teacher thus learns to put its mass on the verified evidence, so its Δ_t carries information
as a pretrained VLM's would.
"""
from __future__ import annotations

import random
import re

from visd_core.prompt import format_box, format_time

_TIME = re.compile(r"<t>([0-9.]+)</t>")
_BOX = re.compile(r"<box>\[(\d+),(\d+),(\d+),(\d+)\]</box>")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_LETTER = re.compile(r"\b([A-H])\b")
KINDS = ("time", "box", "answer", "truncate")


def _shift_times(text: str, rng: random.Random) -> str:
    shift = rng.choice([-1, 1]) * rng.uniform(1.5, 3.0)
    return _TIME.sub(lambda m: f"<t>{format_time(max(0.0, float(m.group(1)) + shift))}</t>", text)


def _shift_boxes(text: str, rng: random.Random, frame_size: tuple[int, int]) -> str:
    w, h = frame_size
    dx, dy = rng.choice([-1, 1]) * rng.randint(w // 4, w // 2), rng.choice([-1, 1]) * rng.randint(h // 4, h // 2)

    def move(m):
        x1, y1, x2, y2 = (int(v) for v in m.groups())
        bw, bh = x2 - x1, y2 - y1
        nx1 = min(max(0, x1 + dx), max(0, w - bw))
        ny1 = min(max(0, y1 + dy), max(0, h - bh))
        return f"<box>{format_box([nx1, ny1, nx1 + bw, ny1 + bh])}</box>"
    return _BOX.sub(move, text)


def _wrong_answer(text: str, rng: random.Random, frame_size: tuple[int, int]) -> str:
    m = _ANSWER.search(text)
    if not m:
        return _shift_times(text, rng)
    ans = m.group(1)
    if _TIME.search(ans) or _BOX.search(ans):
        bad = _shift_boxes(_shift_times(ans, rng), rng, frame_size)
    elif _LETTER.search(ans):
        bad = _LETTER.sub(lambda l: rng.choice([c for c in "ABCD" if c != l.group(1)]), ans, count=1)
    else:
        words = ans.split()
        bad = " ".join(words[::-1]) if len(words) > 1 else "nothing"
    return text[:m.start(1)] + bad + text[m.end(1):]


def corrupt_reasoning(text: str, rng: random.Random, frame_size: tuple[int, int]) -> tuple[str, str]:
    """(corrupted text, kind) for a correct grounded completion `text`."""
    kind = rng.choice(KINDS)
    if kind == "time" and _TIME.search(text):
        return _shift_times(text, rng), kind
    if kind == "box" and _BOX.search(text):
        return _shift_boxes(text, rng, frame_size), kind
    if kind == "truncate":
        cut = text.find("</think>")
        return text[: max(1, (cut if cut > 0 else len(text)) // 2)], kind
    return _wrong_answer(text, rng, frame_size), "answer"
