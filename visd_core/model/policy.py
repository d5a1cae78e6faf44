"""The policy class: transformers' Qwen2.5-VL plus one forward entry for completion positions.

`forward_completion` runs the backbone on the whole batch but applies `lm_head` only to the
hidden states of the chosen positions — all at once (the student: `[N, V]` logits that the fused
loss consumes) or chunk by chunk through a reduction (the teacher: each chunk's logits become an
O(N·K) summary and are freed before the next). Under FSDP2 it is registered as a forward method
(`fsdp_forward_methods`), so the root's parameters, `lm_head` included, are gathered around it.
The state dict is the stock model's: checkpoints and exports load into
`Qwen2_5_VLForConditionalGeneration` unchanged.
"""
from __future__ import annotations

from typing import Callable

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
                           **inputs) -> torch.Tensor | list:
        """Logits at the positions where `keep` [B, S] is True, in row-major order.

        reduce=None: one `[N, V]` tensor in the compute dtype. Otherwise a list with
        `reduce(logits_CV, rows)` for consecutive chunks of at most `chunk_tokens` rows
        (`rows` is the chunk's slice of the N positions); only one chunk's logits exist at a time
        when no graph holds them (call it under `torch.no_grad()`).
        `inputs` go to the backbone (input_ids, attention_mask, position_ids, pixel_values, ...).
        """
        hidden_BSH = self.model(**inputs, use_cache=False).last_hidden_state
        hidden_NH = hidden_BSH[keep]     # boolean index keeps each sequence's positions contiguous
        if reduce is None:
            return self.lm_head(hidden_NH)
        n = hidden_NH.shape[0]
        step = chunk_tokens if chunk_tokens > 0 else max(n, 1)
        return [reduce(self.lm_head(hidden_NH[i:i + step]), slice(i, min(i + step, n))) for i in range(0, n, step)]
