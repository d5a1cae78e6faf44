"""Format reward (visd §C.1; visioncoach §3.4 r_fmt; Open-o3-Video's three levels).

1.0  one <think>…</think> then one <answer>…</answer> with nothing else around them, balanced
     and valid <obj>/<box>/<t> tags, and the grounded reasoning the task requires;
0.5  the structure is right but the reasoning lacks the grounding its task requires;
0.0  anything structurally wrong (missing, unclosed, repeated or stray tags, an empty answer,
     unbalanced or malformed grounding tags, a truncated output).
"""
from __future__ import annotations

from visd_core.rewards.parse import Completion

FULL, PARTIAL, BROKEN = 1.0, 0.5, 0.0
# Temporal reasoning cites at least the two ends of what it localizes (Open-o3-Video's rule).
MIN_TEMPORAL_CITES = 2


def grounding_gap(c: Completion, task: str) -> str | None:
    """What grounded reasoning `task` requires that <think> lacks, or None when it has it."""
    if task in ("temporal_qa", "temporal_mcq"):
        if len(c.think_times) < MIN_TEMPORAL_CITES:
            return f"reasoning cites fewer than {MIN_TEMPORAL_CITES} timestamps <t>T</t>s"
    elif task == "visual_qa":
        if not c.claims:
            return "reasoning cites no <obj>NAME</obj><box>[x1,y1,x2,y2]</box>"
    elif task == "st_freeform":
        if not any(cl.time is not None for cl in c.claims):
            return "reasoning cites no <obj>NAME</obj><box>[…]</box>at<t>T</t>s evidence"
    return None                                   # general video QA needs no grounding


def format_reward(c: Completion, task: str) -> tuple[float, list[str]]:
    """The format score and every problem found (the structural ones come from the parser)."""
    if c.issues:
        return BROKEN, list(c.issues)
    gap = grounding_gap(c, task)
    return (PARTIAL, [gap]) if gap else (FULL, [])
