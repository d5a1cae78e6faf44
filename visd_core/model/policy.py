"""The policy class: transformers' Qwen2.5-VL plus one forward entry for completion positions.

`forward_completion` runs the backbone on the whole batch but applies `lm_head` only to the
hidden states of the chosen positions — all at once (`[N, V]` logits), chunk by chunk through a
reduction (each chunk's logits become an O(N·K) summary and are freed before the next), or not at
all: `on_hidden` gets the hidden states and lm_head's weight, for the fused-linear kernels
(`kernels.linear_*`), which make the logits themselves one token chunk at a time. Under FSDP2 it
is registered as a forward method (`fsdp_forward_methods`), so the root's parameters, `lm_head`
included, are gathered around it.
The state dict is the stock model's: checkpoints and exports load into
`Qwen2_5_VLForConditionalGeneration` unchanged.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from transformers import Qwen2_5_VLForConditionalGeneration

# Qwen2.5-VL's special-token ids (tokenizer_config.json of the released checkpoints).
IMAGE_TOKEN_ID = 151655       # <|image_pad|>
VIDEO_TOKEN_ID = 151656       # <|video_pad|>
VISION_START_ID = 151652      # <|vision_start|>
VISION_END_ID = 151653        # <|vision_end|>
IM_END_ID = 151645            # <|im_end|>
ENDOFTEXT_ID = 151643         # <|endoftext|> (bos, pad)
EOS_IDS = (IM_END_ID, ENDOFTEXT_ID)


class Qwen2_5_VLPolicy(Qwen2_5_VLForConditionalGeneration):
    # Entries besides forward that read root parameters (lm_head): visd_core.parallel.shard_model
    # registers them with FSDP2 so the root is gathered around them.
    fsdp_forward_methods = ("forward_completion",)

    def forward_completion(self, keep: torch.Tensor, *, reduce: Callable | None = None, chunk_tokens: int = 0,
                           on_hidden: Callable | None = None, **inputs) -> torch.Tensor | list | Any:
        """Logits at the positions where `keep` [B, S] is True, in row-major order.

        reduce=None: one `[N, V]` tensor in the compute dtype. Otherwise a list with
        `reduce(logits_CV, rows)` for consecutive chunks of at most `chunk_tokens` rows
        (`rows` is the chunk's slice of the N positions); only one chunk's logits exist at a time
        when no graph holds them (call it under `torch.no_grad()`).
        on_hidden: returns `on_hidden(hidden_NH, lm_head_weight_VH)` instead — the final hidden states
        at those positions and lm_head's whole weight (the embedding itself when tied). It runs in
        here because under FSDP2 the root's parameters are gathered only while this method runs:
        the weight is gathered once per call, with autograd intact, and freed again on return.
        `inputs` go to the backbone (input_ids, attention_mask, position_ids, pixel_values, ...).
        """
        hidden_BSH = self.model(**inputs, use_cache=False).last_hidden_state
        hidden_NH = hidden_BSH[keep]     # boolean index keeps each sequence's positions contiguous
        if on_hidden is not None:
            return on_hidden(hidden_NH, self.lm_head.weight)
        if reduce is None:
            return self.lm_head(hidden_NH)
        n = hidden_NH.shape[0]
        step = chunk_tokens if chunk_tokens > 0 else max(n, 1)
        return [reduce(self.lm_head(hidden_NH[i:i + step]), slice(i, min(i + step, n))) for i in range(0, n, step)]
