"""Logits at completion positions only: what the fused kernels and the teacher summary consume.

A batch is padded `[B, S]` token rows (left or right padding) with a mask of the completion tokens.
Position t predicts token t+1, so the logits kept are those of the positions just before each
completion token: `[N, V]` in the model's compute dtype, rows grouped by sequence (`seq_lens`),
no log-softmax and no float32 copy. Frames are images (one `<|image_pad|>` run per sampled frame,
one `image_grid_thw` row each); M-RoPE positions come from the model's own `get_rope_index`.
`completion_hidden` is the fused-linear path: the final hidden states at those positions and
lm_head's weight go to a function (a `kernels.linear_*` op) that never makes the `[N, V]` logits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn



@dataclass
class PolicyBatch:
    input_ids: torch.Tensor                       # [B, S] int64: prompt + completion, padded
    attention_mask: torch.Tensor                  # [B, S] 1 at real tokens, 0 at padding
    completion_mask: torch.Tensor                 # [B, S] bool: the completion tokens to score
    pixel_values: torch.Tensor | None = None      # [P, 3*2*14*14] flattened patches of every image, in order
    image_grid_thw: torch.Tensor | None = None    # [I, 3] (t, h, w) patch grid per image, in token order


@dataclass
class CompletionLogits:
    logits: torch.Tensor      # [N, V] compute dtype; row i predicts targets[i]
    targets: torch.Tensor     # [N] int64 completion tokens
    seq_lens: torch.Tensor    # [B] int64 completion tokens per sequence; sum == N


@dataclass
class CompletionHidden:
    hidden: torch.Tensor      # [N, H] compute dtype: final (normed) hidden state; row i predicts targets[i]
    weight: torch.Tensor      # [V, H] lm_head's weight, whole (the embedding when tied); valid inside the call only
    targets: torch.Tensor     # [N] int64 completion tokens
    seq_lens: torch.Tensor    # [B] int64 completion tokens per sequence; sum == N


@dataclass
class CompletionOutput:
    out: Any                  # what completion_hidden's function returned
    targets: torch.Tensor     # [N] int64 completion tokens
    seq_lens: torch.Tensor    # [B] int64 completion tokens per sequence; sum == N


def completion_targets(batch: PolicyBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(keep [B, S] bool: positions whose logits predict a completion token, targets [N], seq_lens [B])."""
    comp = batch.completion_mask.bool()
    if comp.shape != batch.input_ids.shape or batch.attention_mask.shape != batch.input_ids.shape:
        raise ValueError(f"input_ids {tuple(batch.input_ids.shape)}, attention_mask "
                         f"{tuple(batch.attention_mask.shape)} and completion_mask {tuple(comp.shape)} must match")
    if comp[:, 0].any():
        raise ValueError("a completion token at position 0 has no position to predict it (left-pad or add a prompt)")
    if (comp & ~batch.attention_mask.bool()).any():
        raise ValueError("completion_mask marks padding tokens")
    keep = torch.zeros_like(comp)
    keep[:, :-1] = comp[:, 1:]
    return keep, batch.input_ids[comp], comp.sum(dim=1)


def mrope_position_ids(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       image_grid_thw: torch.Tensor | None) -> torch.Tensor:
    """[3, B, S] (temporal, height, width) positions; text tokens advance all three together."""
    image_id, video_id = model.config.image_token_id, model.config.video_token_id   # a vocab subset moves them
    if (input_ids == video_id).any():
        raise ValueError("video placeholders are not supported: give each sampled frame as its own image")
    n_img_tokens = int((input_ids == image_id).sum())
    merge = model.config.vision_config.spatial_merge_size
    expected = 0 if image_grid_thw is None else int(image_grid_thw.prod(-1).sum()) // merge ** 2
    if n_img_tokens != expected:
        raise ValueError(f"{n_img_tokens} <|image_pad|> tokens but image_grid_thw describes {expected}")
    mm_token_type_ids = (input_ids == image_id).int()    # 1 = image, 0 = text
    positions, _ = model.model.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw=image_grid_thw,
                                              attention_mask=attention_mask)
    return positions


def _backbone_inputs(model: nn.Module, batch: PolicyBatch) -> dict:
    return dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=mrope_position_ids(model, batch.input_ids, batch.attention_mask, batch.image_grid_thw),
                pixel_values=batch.pixel_values, image_grid_thw=batch.image_grid_thw)


def completion_logits(model: nn.Module, batch: PolicyBatch) -> CompletionLogits:
    """The student path: all completion logits at once, differentiable."""
    keep, targets, seq_lens = completion_targets(batch)
    logits = model.forward_completion(keep, **_backbone_inputs(model, batch))
    return CompletionLogits(logits, targets, seq_lens)


def map_completion_logits(model: nn.Module, batch: PolicyBatch, fn: Callable, *, chunk_tokens: int = 1024):
    """The teacher path: `fn(logits_CV, targets_C)` on consecutive chunks of at most `chunk_tokens`
    completion positions, each chunk's logits dropped before the next is made.

    Returns (list of fn results in order, targets [N], seq_lens [B]). Runs under no_grad: the
    summaries are constants to the student's loss.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    keep, targets, seq_lens = completion_targets(batch)
    with torch.no_grad():
        out = model.forward_completion(keep, reduce=lambda z, rows: fn(z, targets[rows]), chunk_tokens=chunk_tokens,
                                       **_backbone_inputs(model, batch))
    return out, targets, seq_lens


def completion_hidden(model: nn.Module, batch: PolicyBatch, fn: Callable[[CompletionHidden], Any]) -> CompletionOutput:
    """The fused-linear path: `fn(CompletionHidden)` runs inside the model's forward, where FSDP2 holds
    the root's parameters gathered, so fn may use lm_head's whole weight (gathered once per call, not
    per chunk) with autograd intact; its result is returned (never the weight itself: FSDP2 frees it
    on return and gathers it again for the backward). Memory: fn sees `[N, H]` hidden states, and the
    `kernels.linear_*` ops make the logits chunk by chunk.
    Differentiable when called with grad enabled (the policy update, SFT); wrap in torch.no_grad()
    for the teacher replay.
    """
    keep, targets, seq_lens = completion_targets(batch)
    out = model.forward_completion(keep, on_hidden=lambda h, w: fn(CompletionHidden(h, w, targets, seq_lens)),
                                   **_backbone_inputs(model, batch))
    return CompletionOutput(out, targets, seq_lens)
