"""Multiple-choice accuracy (VideoMME, WorldSense, VideoMMMU, PerceptionTest; visioncoach
Appendix A): the percentage of outputs whose chosen letter is the verified one, read as the
reward reads it (`Correct Option: X`, or a bare `B`, `B.`, `(B)`, `[B]`)."""
from __future__ import annotations

from collections.abc import Sequence

from visd_core.rewards.parse import answer_or_text, parse_correct_option, parse_letter


def chosen_letter(output: str) -> str | None:
    text = answer_or_text(output)
    return parse_correct_option(text) or parse_letter(text)


def accuracy(outputs: Sequence[str], answers: Sequence[str]) -> float:
    if len(outputs) != len(answers) or not answers:
        raise ValueError(f"need as many outputs as answers, and some: got {len(outputs)} and {len(answers)}")
    return 100 * sum(chosen_letter(o) == a.strip() for o, a in zip(outputs, answers)) / len(answers)
