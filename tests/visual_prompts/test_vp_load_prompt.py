"""load_prompt with a visual prompt: x' (prompted key frames) and q' (hinted question), visioncoach
Alg. 1 line 9; without one, exactly the inputs it always built."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from visd_core.config import Data as DataCfg
from visd_core.data.model_inputs import SampleError, decode_frames, load_prompt
from visd_core.data.reader import JsonlReader
from visd_core.data.synthetic import MAX_PIXELS
from visd_core.data.video import frames_to_image_inputs, read_video
from visd_core.prompt import build_chat
from visd_core.tokenizer import load_tokenizer
from visd_core.visual_prompts import HINTS, ClipRelevance, key_frame_boxes

CFG = DataCfg(max_pixels=MAX_PIXELS)        # the synthetic budget: 12 tokens per frame, fast
IDS = ["train_00000", "train_00002"]        # two key frames with one box each; one key frame with two boxes


@pytest.fixture(scope="module")
def records(synthetic):
    _, jsonl = synthetic
    return {r.id: r for r in JsonlReader(str(jsonl), shuffle=False).records}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("")


def per_frame(sample):
    """pixel_values split into one [patches, 1176] block per sampled frame."""
    return torch.split(sample.pixel_values, sample.grid_thw.prod(dim=1).tolist())


@pytest.mark.parametrize("rid", IDS)
def test_without_a_visual_prompt_the_inputs_are_unchanged(records, tok, rid):
    rec = records[rid]
    sample = load_prompt(rec, CFG, tok)
    # what load_prompt built before visual prompts existed, step by step
    video = read_video(rec.video_path, CFG.num_frames, min_frames=CFG.min_frames, max_frames=CFG.max_frames)
    vis = frames_to_image_inputs(video.frames, CFG.min_pixels, CFG.max_pixels)
    ids = tok.encode_chat(build_chat(rec, video.times, vis.tokens_per_item(), video.duration),
                          add_generation_prompt=True)
    assert sample.prompt_ids == ids
    assert torch.equal(sample.pixel_values, vis.pixel_values) and torch.equal(sample.grid_thw, vis.grid_thw)
    assert sample.record is rec and sample.frame_times == list(video.times)
    raw = load_prompt(rec, CFG, tok, visual_prompt="raw")       # raw: no marks and an empty hint
    assert raw.prompt_ids == ids and torch.equal(raw.pixel_values, vis.pixel_values)


@pytest.mark.parametrize("rid", IDS)
@pytest.mark.parametrize("kind", ["circle", "darken", "numpro"])
def test_a_visual_prompt_marks_key_frames_and_hints_the_question(records, tok, rid, kind):
    rec = records[rid]
    question = rec.question
    plain = load_prompt(rec, CFG, tok)
    prompted = load_prompt(rec, CFG, tok, visual_prompt=kind)
    assert rec.question == question, "the caller's record was changed"
    assert prompted.record.question == f"{question} {HINTS[kind]}"
    text = tok.decode(prompted.prompt_ids)
    assert f"{question} {HINTS[kind]}\n" in text and HINTS[kind] not in tok.decode(plain.prompt_ids)
    assert prompted.tokens_per_frame == plain.tokens_per_frame      # same frames, same visual tokens
    key = key_frame_boxes(plain.frame_times, rec)
    assert key, "the synthetic record's key frames are among the sampled frames"
    for t, (a, b) in enumerate(zip(per_frame(plain), per_frame(prompted))):
        assert torch.equal(a, b) != (t in key), f"frame {t}: key frame {t in key}"


def test_api_prompt_through_load_prompt(records, tok, clip_dir):
    rec = records["train_00002"]
    with pytest.raises(ValueError, match=r"visioncoach\.clip_path"):
        load_prompt(rec, CFG, tok, visual_prompt="api_prompt")
    sample = load_prompt(rec, CFG, tok, visual_prompt="api_prompt", clip=ClipRelevance.from_pretrained(clip_dir))
    assert not torch.equal(sample.pixel_values, load_prompt(rec, CFG, tok).pixel_values)
    assert HINTS["api_prompt"] in tok.decode(sample.prompt_ids)


def test_unknown_visual_prompt_is_a_config_error(records, tok):
    with pytest.raises(ValueError, match="unknown visual prompt 'red_circle'"):
        load_prompt(records["train_00002"], CFG, tok, visual_prompt="red_circle")


def test_decode_frames_gives_original_resolution_frames_and_times(records):
    video = decode_frames(records["train_00002"], CFG)
    assert video.frames.shape == (16, 120, 160, 3) and video.frames.dtype == np.uint8
    assert len(video.times) == 16


def test_decode_frames_raises_sample_error_on_a_missing_video(records, tmp_path):
    rec = replace(records["train_00002"], video_path=str(tmp_path / "gone.mp4"))
    with pytest.raises(SampleError) as e:
        decode_frames(rec, CFG)
    assert e.value.reason == "unreadable_video"
    with pytest.raises(SampleError):
        load_prompt(rec, CFG, load_tokenizer(""), visual_prompt="darken")
