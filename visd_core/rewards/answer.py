"""Answer rewards (visd eq. 10's ans, ans-tmp, ans-spa; visioncoach §3.4 r_acc).

- multiple choice: 1 if the chosen letter is the verified one (`B`, `B.`, `(B)`, `[B]` all read
  as B; temporal MCQ names it after `Correct Option:`);
- free form: ROUGE similarity to the verified text (mean of ROUGE-1/2/L F, Open-o3-Video);
- temporal answers: IoU of the answered interval with the verified window;
- visual answers: IoU of the answered box(es) with the verified box(es), ground truth scaled into
  the pixels of the frame the model saw; an object with several boxes is scored as the spatial
  rewards score it (`reward.multi_instance`).
A missing or unparseable answer scores 0.
"""
from __future__ import annotations

from visd_core.rewards.iou import Box, Interval, interval_iou, object_iou
from visd_core.rewards.parse import Completion
from visd_core.rewards.rouge import rouge_score


def chosen_option(c: Completion) -> str | None:
    """The letter a completion answers: after `Correct Option:` if present, else the bare letter."""
    return c.correct_option or c.letter


def option_reward(c: Completion, gt_letter: str) -> float:
    return float(chosen_option(c) == gt_letter)


def freeform_reward(c: Completion, gt_text: str) -> float:
    return rouge_score(gt_text, c.answer) if c.answer else 0.0


def interval_reward(c: Completion, window: Interval) -> float:
    return interval_iou(c.answer_interval, window) if c.answer_interval is not None else 0.0


def box_reward(c: Completion, gt_boxes: list[Box], multi_instance: str = "max") -> float:
    return object_iou(c.answer_boxes, gt_boxes, multi_instance)
