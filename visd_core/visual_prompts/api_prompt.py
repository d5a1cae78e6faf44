"""Attention prompting: shade each key frame by its relevance to the question (visioncoach App. C.1,
after API, Yu et al. 2024, with CLIP-ViT-L-14-336).

    clip = ClipRelevance.from_pretrained("/models/clip-vit-large-patch14-336")   # once, then reused
    rel_KHW = clip.relevance(frames_KHW3, question)     # [K, H, W] float32 in [0, 1]
    out_HW3 = api_prompt(frame_HW3, rel_KHW[0])         # new array

The relevance map, as App. C.1 describes it: the patch tokens of an intermediate vision layer go
through the vision tower's post-layernorm and visual projection into the joint space, their cosine
similarity with the question's text embedding gives one score per patch, and the patch grid is
smoothed, min-max normalized and upsampled to the frame. This is a simplification of API's CLIP
path, which decomposes the class token into per-patch contributions through the last layers
(PRS hooks); the projected patch tokens need no hooks and keep the same ingredients (layer,
projection, text embedding, normalization, blend).

The frame is squashed to the CLIP's square input instead of CLIP's resize-and-center-crop, so the
map covers the whole frame and upsampling it back is exact in geometry (a crop would lose the
frame's sides and misplace the map on wide frames).

The CLIP loads from a local directory only (config, weights, tokenizer, preprocessor config), with
transformers' CLIPModel; no network.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

# The blend's floor: the least relevant pixels keep darken's 3/10 of their value, the most relevant
# all of it. API blends image * m + gray * (1 - m) with gray 0; the floor keeps the context visible.
from visd_core.visual_prompts.darken import DARKEN_DEN, DARKEN_NUM

API_LAYER = -2          # hidden_states[-2], block 22's output (0-based): the default layer_index of API's
                        # CLIP script for ViT-L-14-336 (24 blocks)
SMOOTH_KERNEL = 3       # API's kernel_size: a 3x3 mean over the patch grid removes single-patch spikes


class ClipRelevance:
    """A CLIP (transformers CLIPModel) with its tokenizer and image processor, on CPU, in eval mode."""

    def __init__(self, model, tokenizer, image_processor):
        self.model, self.tokenizer, self.image_processor = model.eval(), tokenizer, image_processor

    @classmethod
    def from_pretrained(cls, path: str) -> ClipRelevance:
        """Load a CLIP saved with save_pretrained (model + tokenizer + preprocessor config) from `path`."""
        if not os.path.isdir(path):
            raise ValueError(f"visioncoach.clip_path {path!r} is not a directory (a local CLIP saved with "
                             "save_pretrained is needed; nothing is downloaded)")
        model = CLIPModel.from_pretrained(path, local_files_only=True).float()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        # The PIL backend: CLIPImageProcessor would ask for torchvision and fall back to this anyway.
        image_processor = CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, image_processor)

    @torch.no_grad()
    def relevance(self, frames: np.ndarray, text: str) -> np.ndarray:
        """[K, H, W, 3] uint8 frames and one text -> [K, H, W] float32 relevance in [0, 1] per frame."""
        K, H, W = frames.shape[:3]
        vcfg = self.model.config.vision_config
        side = vcfg.image_size
        pixels = self.image_processor(images=list(frames), do_center_crop=False,
                                      size={"height": side, "width": side}, return_tensors="pt")["pixel_values"]
        hidden = self.model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states[API_LAYER]
        patches_KND = self.model.visual_projection(self.model.vision_model.post_layernorm(hidden[:, 1:]))
        ids = self.tokenizer([text], return_tensors="pt", truncation=True,
                             max_length=self.model.config.text_config.max_position_embeddings)
        text_1D = self.model.get_text_features(**ids).pooler_output
        sim_KN = torch.einsum("knd,d->kn", F.normalize(patches_KND, dim=-1), F.normalize(text_1D[0], dim=-1))
        g = side // vcfg.patch_size
        grid = sim_KN.reshape(K, 1, g, g)
        pad = SMOOTH_KERNEL // 2
        grid = F.avg_pool2d(F.pad(grid, (pad, pad, pad, pad), mode="replicate"), SMOOTH_KERNEL, stride=1)
        lo = grid.amin(dim=(2, 3), keepdim=True)
        span = grid.amax(dim=(2, 3), keepdim=True) - lo
        # A flat map says nothing: relevance 1 everywhere, i.e. the frame is left as it is.
        grid = torch.where(span > 0, (grid - lo) / span.clamp_min(1e-12), torch.ones_like(grid))
        return F.interpolate(grid, size=(H, W), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1).numpy()


def api_prompt(frame: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 and [H, W] relevance m in [0, 1] -> a new [H, W, 3] uint8: each pixel scaled by
    0.3 + 0.7 m, rounded half up. Computed as (p * (3 + 7m) + 5) // 10 so that
    m = 0 gives darken's integers exactly and m = 1 the frame itself."""
    tenths = DARKEN_NUM + (DARKEN_DEN - DARKEN_NUM) * relevance.astype(np.float64)
    out = np.floor((frame.astype(np.float64) * tenths[..., None] + DARKEN_DEN // 2) / DARKEN_DEN)
    return out.clip(0, 255).astype(np.uint8)
