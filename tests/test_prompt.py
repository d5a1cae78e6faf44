"""Prompt layout of the grounded-reasoning papers: frames with times, duration, question, format."""
import pytest

from visd_core.data.schema import MCQ_TASKS, TASKS, Record
from visd_core.prompt import (FORMAT_INSTRUCTIONS, build_chat, frame_lines, render_user_prompt,
                              visual_token_count)
from visd_core.tokenizer import load_tokenizer, render_chat


def _record(task="video_mcq", **kw) -> Record:
    base = dict(id="s1", task=task, question="What color is the circle that appears first?", answer="B",
                video_path="v.mp4", options=["red", "B. blue", "green"])
    if task in ("temporal_qa", "temporal_mcq"):
        base["window"] = (1.0, 2.0)
    base.update(kw)
    return Record(**base)


MCQ_INSTRUCTION = (
    "First think step by step inside <think> </think>, then give the final answer inside "
    "<answer> </answer>: <think>...</think><answer>...</answer>. Ground the reasoning in the video: "
    "whenever you rely on an object, give its name, its bounding box in pixel coordinates of the frame "
    "and the time of that frame as <obj>object_name</obj><box>[x1,y1,x2,y2]</box>at<t>time_in_seconds</t>s, "
    "and write any other moment as <t>time_in_seconds</t>s. "
    "The answer is only the letter of the correct option, e.g. <answer>B</answer>.")


def test_mcq_prompt_matches_hand_written_text():
    got = render_user_prompt(_record(), frame_times=[0.0, 1.25, 2.5], tokens_per_frame=[2, 2, 3], duration=3.7)
    pad = "<|image_pad|>"
    want = (f"Frame 1 at 0.0s: <|vision_start|>{pad}{pad}<|vision_end|>\n"
            f"Frame 2 at 1.2s: <|vision_start|>{pad}{pad}<|vision_end|>\n"
            f"Frame 3 at 2.5s: <|vision_start|>{pad}{pad}{pad}<|vision_end|>\n"
            "The video is in total 3 seconds.\n"
            "What color is the circle that appears first?\n"
            "A. red\n"
            "B. blue\n"
            "C. green\n"
            + MCQ_INSTRUCTION)
    assert got == want


def test_chat_ids_place_one_visual_token_per_merged_patch():
    tok = load_tokenizer("")
    per_frame = [visual_token_count((1, 16, 20)), visual_token_count((1, 16, 20))]   # 80 each
    msgs = build_chat(_record(), [0.5, 1.5], per_frame, 2.0)
    ids = tok.encode_chat(msgs, add_generation_prompt=True)
    assert ids.count(tok.image_pad) == 160
    assert ids.count(tok.vision_start) == ids.count(tok.vision_end) == 2
    assert ids.count(tok.im_start) == 3 and ids[-3:] == tok.encode("<|im_start|>assistant\n", allow_special=True)
    # Each frame's pads sit contiguously between its own start and end markers.
    s = ids.index(tok.vision_start)
    assert ids[s + 1:s + 81] == [tok.image_pad] * 80 and ids[s + 81] == tok.vision_end
    assert render_chat(msgs, add_generation_prompt=True).startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nFrame 1 at 0.5s: ")


@pytest.mark.parametrize("task", TASKS)
def test_every_task_ends_with_its_format_instruction(task):
    text = render_user_prompt(_record(task), [0.0], 1, 1.0)
    assert text.endswith(FORMAT_INSTRUCTIONS[task])
    assert ("\nA. red\nB. blue\nC. green\n" in text) == (task in MCQ_TASKS)


def test_answer_formats_named_in_instructions():
    assert "From <t>start_time</t>s to <t>end_time</t>s" in FORMAT_INSTRUCTIONS["temporal_qa"]
    assert "From <t>start_time</t>s to <t>end_time</t>s. Correct Option: X" in FORMAT_INSTRUCTIONS["temporal_mcq"]
    assert "<obj>object_name</obj><box>[x1,y1,x2,y2]</box>" in FORMAT_INSTRUCTIONS["visual_qa"]
    for task in TASKS:
        assert "<obj>object_name</obj><box>[x1,y1,x2,y2]</box>at<t>time_in_seconds</t>s" in FORMAT_INSTRUCTIONS[task]


def test_teacher_can_add_a_block_before_the_assistant_turn():
    msgs = build_chat(_record(), [0.0], 1, 1.0)
    msgs.append({"role": "user", "content": "[Hidden hindsight evidence] answer: B"})
    text = render_chat(msgs, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\n[Hidden hindsight evidence] answer: B<|im_end|>\n<|im_start|>assistant\n")


def test_visual_token_count():
    assert visual_token_count((1, 32, 32)) == 256          # a 448x448 frame: 32x32 patches of 14 px
    assert visual_token_count((2, 4, 6)) == 12
    with pytest.raises(ValueError, match="multiple of the merge size"):
        visual_token_count((1, 3, 4))


def test_frame_times_use_one_decimal():
    assert frame_lines([0, 10.04, 123.45678], 1).splitlines()[1:] == [
        "Frame 2 at 10.0s: <|vision_start|><|image_pad|><|vision_end|>",
        "Frame 3 at 123.5s: <|vision_start|><|image_pad|><|vision_end|>"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(frame_times=[], tokens_per_frame=1), "at least one frame"),
    (dict(frame_times=[0.0, 1.0], tokens_per_frame=[1]), "2 frame times but 1 visual token counts"),
    (dict(frame_times=[-1.0], tokens_per_frame=1), "frame 1 time -1.0"),
    (dict(frame_times=[0.0], tokens_per_frame=0), "at least one"),
    (dict(frame_times=[0.0], tokens_per_frame=1, duration=float("nan")), "duration nan"),
])
def test_bad_frames_raise(kwargs, match):
    kwargs = {"duration": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        render_user_prompt(_record(), **kwargs)


def test_special_tokens_in_record_text_are_rejected():
    with pytest.raises(ValueError, match=r"record s1: question or option holds the special token <\|image_pad\|>"):
        render_user_prompt(_record(question="What is <|image_pad|>?"), [0.0], 1, 1.0)
    with pytest.raises(ValueError, match=r"special token <\|im_end\|>"):
        render_user_prompt(_record(options=["a<|im_end|>", "b"]), [0.0], 1, 1.0)
