"""From records to model inputs: decoded frames, prompt ids, and padded policy batches.

    sample = load_prompt(record, cfg.data, tokenizer)       # frames, visual tensors, prompt ids
    sample = load_prompt(record, cfg.data, tokenizer, visual_prompt="darken")   # x', q' (visioncoach Alg. 1)
    batch = collate([(sample.prompt_ids, completion_ids, sample), ...], pad_id)

Every row of a batch is left-padded (prompts end at the last column, so the rollout can append),
and its completion tokens follow its prompt; each row carries its own frames (images), so the
same prompt repeated G times repeats its frames in `pixel_values` / `image_grid_thw` order.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from visd_core.config import Data as DataCfg
from visd_core.data.schema import Record
from visd_core.data.video import SampledVideo, frames_to_image_inputs, read_video
from visd_core.model.logits import PolicyBatch
from visd_core.prompt import build_chat
from visd_core.teacher.context import teacher_chat
from visd_core.tokenizer import QwenTokenizer
from visd_core.visual_prompts import ClipRelevance, apply_visual_prompt, with_hint


class SampleError(ValueError):
    """A record that cannot become model inputs: skip it and count it under `reason`
    ("unreadable_video": a missing, corrupt or truncated file; "prompt_too_long")."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class PromptSample:
    record: Record
    prompt_ids: list[int]          # chat-templated student prompt ending in "<|im_start|>assistant\n"
    pixel_values: torch.Tensor     # [patches, 3*2*14*14] float32, one image per sampled frame
    grid_thw: torch.Tensor         # [F, 3] int64
    frame_times: list[float]       # seconds, one per sampled frame
    duration: float                # seconds
    frame_size: tuple[int, int]    # (width, height) of the resized frames: the pixel space of <box>
    tokens_per_frame: list[int]


def decode_frames(record: Record, cfg: DataCfg) -> SampledVideo:
    """The record's sampled frames at the original resolution, with their times (SampleError if unreadable)."""
    try:
        return read_video(record.video_path, cfg.num_frames if cfg.fps <= 0 else None,
                          fps=cfg.fps if cfg.fps > 0 else None, min_frames=cfg.min_frames, max_frames=cfg.max_frames)
    except Exception as e:      # a corrupt or unreadable file: the caller skips and counts it
        raise SampleError(f"{record.id}: cannot read video {record.video_path}: {type(e).__name__}: {e}",
                          "unreadable_video") from e


def load_prompt(record: Record, cfg: DataCfg, tok: QwenTokenizer, *, visual_prompt: str | None = None,
                clip: ClipRelevance | None = None) -> PromptSample:
    """Decode the record's video, build its visual inputs and its student prompt.

    With `visual_prompt` (one of visual_prompts.KINDS): x' and q' of visioncoach Alg. 1 line 9. The
    prompt is drawn on the decoded frames at the original resolution, before the resize, so the
    record's normalized boxes land on exact pixels; `sample.record` is then the hinted record, so a
    prompt rebuilt from it (teacher_prompt_ids) shows the same question."""
    video = decode_frames(record, cfg)
    frames = video.frames
    if visual_prompt is not None:
        frames = apply_visual_prompt(frames, video.times, record, visual_prompt, clip=clip)
        record = with_hint(record, visual_prompt)
    vis = frames_to_image_inputs(frames, cfg.min_pixels, cfg.max_pixels)
    counts = vis.tokens_per_item()
    _, gh, gw = vis.grid_thw[0].tolist()
    sample = PromptSample(record=record, prompt_ids=[], pixel_values=vis.pixel_values, grid_thw=vis.grid_thw,
                          frame_times=list(video.times), duration=video.duration,
                          frame_size=(gw * 14, gh * 14), tokens_per_frame=counts)
    sample.prompt_ids = tok.encode_chat(build_chat(record, sample.frame_times, counts, sample.duration),
                                        add_generation_prompt=True)
    if len(sample.prompt_ids) > cfg.max_prompt_len:
        raise SampleError(f"{record.id}: prompt of {len(sample.prompt_ids)} tokens exceeds data.max_prompt_len "
                          f"= {cfg.max_prompt_len}", "prompt_too_long")
    return sample


def teacher_prompt_ids(sample: PromptSample, tok: QwenTokenizer, feedback: str | None) -> list[int]:
    """The teacher's prompt for this sample: the student's plus the hindsight block (visd eq. 2)."""
    msgs = teacher_chat(sample.record, sample.frame_times, sample.tokens_per_frame, sample.duration,
                        sample.frame_size, feedback)
    return tok.encode_chat(msgs, add_generation_prompt=True)


def collate(rows: Sequence[tuple[list[int], list[int], PromptSample]], pad_id: int) -> PolicyBatch:
    """Left-padded [B, S] rows of prompt + completion; completion_mask marks the completion."""
    if not rows:
        raise ValueError("cannot collate an empty batch")
    S = max(len(p) + len(c) for p, c, _ in rows)
    B = len(rows)
    ids = torch.full((B, S), pad_id, dtype=torch.long)
    att = torch.zeros(B, S, dtype=torch.long)
    comp = torch.zeros(B, S, dtype=torch.bool)
    for b, (prompt, completion, _) in enumerate(rows):
        n = len(prompt) + len(completion)
        ids[b, S - n:] = torch.tensor(prompt + completion, dtype=torch.long)
        att[b, S - n:] = 1
        comp[b, S - len(completion):] = True       # empty when there is no completion
    return PolicyBatch(ids, att, comp, torch.cat([s.pixel_values for _, _, s in rows]),
                       torch.cat([s.grid_thw for _, _, s in rows]))
