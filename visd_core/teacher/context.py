"""The teacher's privileged context r = (a*, e, f) (visd §3.2 eq. 2, Algorithm 1 line 16).

The teacher sees the student's own prompt and frames, plus — before the assistant turn — a block
marked as hidden hindsight evidence: the verified answer a*, the verified temporal window, the key
frames with their objects and boxes (e), and the judge's feedback f on this very rollout. It then
replays the student's completion tokens unchanged; it never generates. The answer-only variant
(visd Table 5, "w/o Feedback") is the same block without f.

Boxes are written in integer pixels of the resized frame the model saw, like the boxes the
student cites, so the teacher can compare them directly.
"""
from __future__ import annotations

from collections.abc import Sequence

from visd_core.data.resize import box_to_pixels
from visd_core.data.schema import MCQ_TASKS, Record
from visd_core.prompt import build_chat, format_box, format_time
from visd_core.tokenizer import SPECIAL_TOKENS

HINDSIGHT_HEADER = ("[Hidden hindsight evidence, verified after the attempt and never shown to the student. "
                    "Use it to judge each step of the response that follows.]")
FEEDBACK_MAX_CHARS = 1000     # the judge's feedback cap (visd Appendix G: 2-4 sentences)


def _clean(text: str) -> str:
    """Judge text is untrusted: drop special-token strings so it cannot fake a turn or an image slot."""
    for special in SPECIAL_TOKENS:
        text = text.replace(special, "")
    return " ".join(text.split())[:FEEDBACK_MAX_CHARS]


def _option_text(record: Record) -> str:
    idx = ord(record.answer) - ord("A")
    opt = record.options[idx].strip() if 0 <= idx < len(record.options) else ""
    return f"{record.answer}. {opt}" if opt and not opt.startswith(record.answer) else (opt or record.answer)


def verified_answer(record: Record, frame_size: tuple[int, int]) -> str:
    """a* in the answer format of the record's task (DESIGN.md conventions)."""
    window = (f"From <t>{format_time(record.window[0])}</t>s to <t>{format_time(record.window[1])}</t>s"
              if record.window is not None else "")
    if record.task == "temporal_qa":
        return window
    if record.task == "temporal_mcq":
        return f"{window}. Correct Option: {_option_text(record)}"
    if record.task in MCQ_TASKS:
        return _option_text(record)
    if record.task == "visual_qa":
        for kf in record.key_frames:
            boxes = record.boxes_at(kf.idx).get(record.answer)
            if boxes:
                return f"<obj>{record.answer}</obj><box>{format_box(box_to_pixels(boxes[0], *frame_size))}</box>"
    return record.answer.strip()


def evidence_lines(record: Record, frame_size: tuple[int, int]) -> list[str]:
    """e: the verified window and the key frames with their objects, boxes in resized-frame pixels."""
    lines = []
    if record.window is not None:
        lines.append(f"Verified temporal window: from {format_time(record.window[0])}s "
                     f"to {format_time(record.window[1])}s.")
    for kf in sorted(record.key_frames, key=lambda k: k.time):
        objs = record.boxes_at(kf.idx)
        items = "; ".join(f"<obj>{name}</obj><box>{format_box(box_to_pixels(b, *frame_size))}</box>"
                          for name, boxes in objs.items() for b in boxes)
        lines.append(f"Key frame at <t>{format_time(kf.time)}</t>s: {items or 'no annotated objects'}.")
    return lines


def hindsight_block(record: Record, frame_size: tuple[int, int], feedback: str | None) -> str:
    """The privileged block r = (a*, e, f); `feedback=None` gives the answer-only teacher."""
    lines = [HINDSIGHT_HEADER, f"Verified answer: {verified_answer(record, frame_size)}"]
    lines += evidence_lines(record, frame_size)
    if feedback is not None:
        lines.append(f"Judge feedback on this attempt: {_clean(feedback)}")
    return "\n".join(lines)


def teacher_chat(record: Record, frame_times: Sequence[float], tokens_per_frame: int | Sequence[int],
                 duration: float, frame_size: tuple[int, int], feedback: str | None) -> list[dict]:
    """[system, user] messages of the teacher: the student's prompt with the hidden block appended
    to the user turn, i.e. right before the assistant turn that replays the student's completion."""
    msgs = build_chat(record, frame_times, tokens_per_frame, duration)
    msgs[-1] = {"role": "user", "content": msgs[-1]["content"] + "\n\n" + hindsight_block(record, frame_size, feedback)}
    return msgs
