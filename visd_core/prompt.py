"""The prompt layout of the grounded-reasoning papers (Open-o3-Video, VisionCoach, VISD).

The user turn, as Open-o3-Video's trainer builds it (each sampled frame is its own image):

    Frame 1 at 0.0s: <|vision_start|><|image_pad|>...<|vision_end|>
    Frame 2 at 1.5s: <|vision_start|><|image_pad|>...<|vision_end|>
    The video is in total 3 seconds.
    {question}
    A. {option}                      (MCQ tasks)
    {the task's format instruction}

`<|image_pad|>` is repeated once per merged visual token of that frame, so the ids line up with
the vision encoder's output. The pieces (system text, user text, generation prompt) stay
separate so the teacher can add its hidden-evidence block before the assistant turn:

    msgs = build_chat(record, times, n_tokens, duration)
    msgs.append({"role": "user", "content": hindsight_block})    # or append to msgs[-1]
    ids = tokenizer.encode_chat(msgs, add_generation_prompt=True)
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from visd_core.data.schema import MCQ_TASKS, TASKS, Record
from visd_core.tokenizer import DEFAULT_SYSTEM_PROMPT, SPECIAL_TOKENS

MERGE_SIZE = 2     # Qwen2.5-VL merges 2x2 patches of 14 px into one LLM token

# Shared by every task: the think/answer structure and how evidence is cited inside <think>
# (the tags the format, temporal and spatial rewards parse; DESIGN.md conventions).
_THINK = ("First think step by step inside <think> </think>, then give the final answer inside "
          "<answer> </answer>: <think>...</think><answer>...</answer>. Ground the reasoning in the video: "
          "whenever you rely on an object, give its name, its bounding box in pixel coordinates of the frame "
          "and the time of that frame as <obj>object_name</obj><box>[x1,y1,x2,y2]</box>at<t>time_in_seconds</t>s, "
          "and write any other moment as <t>time_in_seconds</t>s.")
_ANSWER = {
    "temporal_qa": "The answer is the time period that answers the question, exactly in this format: "
                   "From <t>start_time</t>s to <t>end_time</t>s",
    "temporal_mcq": "The answer is the time period that answers the question, then the letter of the correct "
                    "option, exactly in this format: From <t>start_time</t>s to <t>end_time</t>s. Correct Option: X",
    "visual_qa": "The answer is the object and its bounding box in pixel coordinates of the frame where it is "
                 "seen, exactly in this format: <obj>object_name</obj><box>[x1,y1,x2,y2]</box>",
    "st_freeform": "The answer is a short text response, without <obj>, <box> or <t> tags.",
    "video_mcq": "The answer is only the letter of the correct option, e.g. <answer>B</answer>.",
    "video_freeform": "The answer is a short text response, without <obj>, <box> or <t> tags.",
}
FORMAT_INSTRUCTIONS = {task: f"{_THINK} {_ANSWER[task]}" for task in TASKS}


def visual_token_count(grid_thw: Sequence[int], merge_size: int = MERGE_SIZE) -> int:
    """LLM tokens of one image from its patch grid (t, h, w): t*h*w / merge_size^2. A frame fed as
    an image has t = 1 (the processor duplicates it to fill the temporal patch of 2)."""
    t, h, w = (int(v) for v in grid_thw)
    if h % merge_size or w % merge_size:
        raise ValueError(f"patch grid {h}x{w} is not a multiple of the merge size {merge_size}")
    return t * h * w // merge_size ** 2


def format_time(seconds: float) -> str:
    """Seconds as the prompt writes them: one decimal, like Open-o3-Video's round(t, 1)."""
    return f"{seconds:.1f}"


def format_box(box_px: Sequence[int]) -> str:
    """Integer pixel box as the papers' tags write it, no spaces: `[x1,y1,x2,y2]`."""
    return "[" + ",".join(str(int(v)) for v in box_px) + "]"


def frame_lines(frame_times: Sequence[float], tokens_per_frame: int | Sequence[int]) -> str:
    """`Frame {i} at {t}s: <|vision_start|><|image_pad|>*n<|vision_end|>` per frame, 1-based."""
    if len(frame_times) == 0:
        raise ValueError("a video prompt needs at least one frame")
    one_count = isinstance(tokens_per_frame, numbers.Integral)
    counts = [int(tokens_per_frame)] * len(frame_times) if one_count else [int(n) for n in tokens_per_frame]
    if len(counts) != len(frame_times):
        raise ValueError(f"{len(frame_times)} frame times but {len(counts)} visual token counts")
    lines = []
    for i, (t, n) in enumerate(zip(frame_times, counts), 1):
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"frame {i} time {t!r} must be a finite number >= 0")
        if n < 1:
            raise ValueError(f"frame {i} has {n} visual tokens; every frame has at least one")
        lines.append(f"Frame {i} at {format_time(t)}s: <|vision_start|>{'<|image_pad|>' * n}<|vision_end|>\n")
    return "".join(lines)


def _lettered(options: Sequence[str]) -> list[str]:
    """Options one per line as `A. ...`; an option already starting with its letter is kept."""
    out = []
    for i, opt in enumerate(options):
        letter = chr(ord("A") + i)
        has_letter = opt.startswith((f"{letter}.", f"{letter})", f"({letter})", f"{letter}:"))
        out.append(opt if has_letter else f"{letter}. {opt}")
    return out


def render_user_prompt(record: Record, frame_times: Sequence[float], tokens_per_frame: int | Sequence[int],
                       duration: float) -> str:
    """The user turn for `record` over the sampled frames (times in seconds) of a `duration`-second video."""
    if record.task not in FORMAT_INSTRUCTIONS:
        raise ValueError(f"unknown task {record.task!r} (valid: {', '.join(TASKS)})")
    if not (math.isfinite(duration) and duration >= 0):
        raise ValueError(f"video duration {duration!r} must be a finite number >= 0")
    for text in (record.question, *record.options):    # never let record text become vision or turn tokens
        for special in SPECIAL_TOKENS:
            if special in text:
                raise ValueError(f"record {record.id}: question or option holds the special token {special}")
    # Whole seconds, truncated, as Open-o3-Video writes it (int(n_frames / fps)), so checkpoints
    # trained on its prompts see the same text.
    lines = [frame_lines(frame_times, tokens_per_frame) + f"The video is in total {int(duration)} seconds.",
             record.question.strip()]
    if record.task in MCQ_TASKS:
        lines += _lettered([o.strip() for o in record.options])
    lines.append(FORMAT_INSTRUCTIONS[record.task])
    return "\n".join(lines)


def build_chat(record: Record, frame_times: Sequence[float], tokens_per_frame: int | Sequence[int],
               duration: float, system: str = DEFAULT_SYSTEM_PROMPT) -> list[dict]:
    """[system, user] messages for `QwenTokenizer.encode_chat` / `render_chat`."""
    return [{"role": "system", "content": system},
            {"role": "user", "content": render_user_prompt(record, frame_times, tokens_per_frame, duration)}]
