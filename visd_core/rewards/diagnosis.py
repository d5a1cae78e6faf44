"""The verifier's structured diagnosis of one completion.

The reward code (`rewards/reward.py`) fills one `Diagnosis` per rollout next to its reward
components; the rule judge (`judge/rule.py`) turns it into 2-4 sentences of feedback in the
form of visd Appendix G; the HTTP judge falls back to the rule judge with the same object.
It never changes the reward (visd §3.2): it only says what was wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# What can be wrong with a rollout, in the order the rule judge prefers to name the single most
# likely error cause (visd Appendix G.1, "High-level error cause").
ISSUE_KINDS = ("format", "answer", "time", "object", "box")


@dataclass
class Diagnosis:
    task: str                                   # one of visd_core.data.schema.TASKS
    has_answer: bool                            # a closed <answer>...</answer> span exists
    truncated: bool                             # output stopped inside <think>/<answer> or hit max tokens
    format_ok: bool                             # the format reward's verdict
    format_issues: list[str] = field(default_factory=list)   # e.g. "unbalanced <box> tags"
    pred_answer: str | None = None              # the parsed final answer text (None: no answer)
    answer_score: float = 0.0                   # the answer component in [0, 1]
    answer_correct: bool | None = None          # MCQ: exact; continuous tasks: score >= 0.5
    reasoning_consistent: bool | None = None    # None: nothing to compare; False: think points elsewhere
    consistency_note: str | None = None         # what the reasoning pointed to instead
    claimed_times: list[float] = field(default_factory=list)        # <t> inside <think>
    gt_window: tuple[float, float] | None = None                    # verified answer interval
    key_times: list[float] = field(default_factory=list)            # verified key-frame times
    time_score: float | None = None             # thinking-temporal component (None: not applicable)
    claimed_objects: list[str] = field(default_factory=list)
    gt_objects: list[str] = field(default_factory=list)
    missing_objects: list[str] = field(default_factory=list)        # verified objects never cited
    unknown_objects: list[str] = field(default_factory=list)        # cited objects not in evidence
    box_score: float | None = None              # thinking-spatial component (None: not applicable)
    issues: list[str] = field(default_factory=list)                 # subset of ISSUE_KINDS, most likely first

    def main_issue(self) -> str | None:
        """The single most likely error cause (visd Appendix G.1), or None when all is right."""
        return self.issues[0] if self.issues else None
