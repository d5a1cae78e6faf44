"""The VP-Selector: a Qwen2.5-VL with LoRA that names the visual prompt for a video-question pair
(visioncoach §3.3, App. C.4).

    selector = VPSelector.from_dir("runs/selector")          # frozen: eval mode, no grad
    kinds = selector.predict(records)                        # ["darken", "raw", ...]
    kinds = selector.predict(records, videos)                # frames already decoded (decode_frames)

Input (App. C.4): ONE contact-sheet image of the record's key frames — the raw sampled frames that
carry them, tiled in time order left to right, top to bottom — resized as one image under the
selector's pixel budget, then the question (with its options), the key object names ("optional
key object") and an instruction to choose one of the five methods. Output: the kind's name and
<|im_end|>, greedy; a generation that is not a kind maps to "raw" and is counted in `unmapped`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from visd_core.config import Data as DataCfg
from visd_core.config import Model as ModelCfg
from visd_core.config import Rollout as RolloutCfg
from visd_core.data.model_inputs import PromptSample, collate, decode_frames
from visd_core.data.schema import MCQ_TASKS, Record
from visd_core.data.video import SampledVideo, frames_to_image_inputs
from visd_core.model.build import build_unsharded
from visd_core.model.policy import EOS_IDS, ENDOFTEXT_ID, IM_END_ID
from visd_core.prompt import _lettered
from visd_core.rollout import generate
from visd_core.selector.lora import load_adapter
from visd_core.selector.proxy import GREEDY, tokenizer_spec, shown_frames
from visd_core.tokenizer import QwenTokenizer, load_tokenizer
from visd_core.visual_prompts import KINDS

log = logging.getLogger(__name__)

META = "selector.json"                   # what from_dir reads besides the adapter
ADAPTER = "adapter.safetensors"
SHEET_MAX_PIXELS = 401_408               # the whole sheet: 512 visual tokens, one training frame's (visd Table 8)
MAX_SHEET_FRAMES = 8                     # more key frames are subsampled evenly
SHEET_GAP = 4                            # px of black between tiles, so frames do not read as one scene
MAX_LABEL_TOKENS = 8                     # "api_prompt" is 3 tokens; the stop token ends it sooner
# What each kind does, for the instruction (visual_prompts' HINTS describe the marks once drawn).
METHODS = {"api_prompt": "shade the regions less relevant to the question",
           "circle": "draw red circles around the key objects",
           "darken": "darken everything outside the key objects",
           "numpro": "print the frame number on each key frame",
           "raw": "show the frames unchanged"}


def contact_sheet(video: SampledVideo, record: Record) -> np.ndarray:
    """[H, W, 3] uint8: the record's key frames (raw) tiled in time order on a near-square grid."""
    keys = shown_frames(video, record)
    if len(keys) > MAX_SHEET_FRAMES:
        keys = [keys[i] for i in np.linspace(0, len(keys) - 1, MAX_SHEET_FRAMES).round().astype(int)]
    tiles = video.frames[keys]
    n, h, w = tiles.shape[:3]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    sheet = np.zeros((rows * h + (rows - 1) * SHEET_GAP, cols * w + (cols - 1) * SHEET_GAP, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * (h + SHEET_GAP):r * (h + SHEET_GAP) + h, c * (w + SHEET_GAP):c * (w + SHEET_GAP) + w] = tile
    return sheet


def key_objects(record: Record) -> list[str]:
    """The record's key object names, in first-seen order."""
    return list(dict.fromkeys(name for k in record.key_frames for name in record.boxes_at(k.idx)))


def selector_text(record: Record, n_tokens: int) -> str:
    """The user turn: the sheet's placeholders, the question, the key objects, the instruction."""
    lines = [f"<|vision_start|>{'<|image_pad|>' * n_tokens}<|vision_end|>",
             "The image shows the key frames of a video in time order (left to right, top to bottom).",
             f"Question: {record.question.strip()}"]
    if record.task in MCQ_TASKS:
        lines += _lettered([o.strip() for o in record.options])
    objects = key_objects(record)
    if objects:
        lines.append(f"Key objects: {', '.join(objects)}.")
    lines.append("Which visual prompting method would best help a model answer this question with reasoning "
                 "grounded in the frames? " + "; ".join(f"{k}: {METHODS[k]}" for k in KINDS)
                 + ". Answer with the method name only.")
    return "\n".join(lines)


def selector_sample(record: Record, video: SampledVideo, tok: QwenTokenizer, max_pixels: int,
                    min_pixels: int = 3136) -> PromptSample:
    """The prompt ids and the sheet's visual inputs, as a PromptSample (collate's row type)."""
    sheet = contact_sheet(video, record)
    vis = frames_to_image_inputs(sheet[None], min_pixels, max_pixels)
    (n_tokens,) = vis.tokens_per_item()
    ids = tok.encode_chat([{"role": "user", "content": selector_text(record, n_tokens)}], add_generation_prompt=True)
    _, gh, gw = vis.grid_thw[0].tolist()
    return PromptSample(record=record, prompt_ids=ids, pixel_values=vis.pixel_values, grid_thw=vis.grid_thw,
                        frame_times=[video.times[k] for k in shown_frames(video, record)], duration=video.duration,
                        frame_size=(gw * 14, gh * 14), tokens_per_frame=[n_tokens])


def label_ids(tok: QwenTokenizer, kind: str) -> list[int]:
    """The training target: the kind as a short string, then <|im_end|>."""
    return tok.encode(kind) + [IM_END_ID]


def to_kind(text: str) -> str | None:
    """A generated string as a kind (case and surrounding punctuation ignored), or None."""
    word = text.strip().strip(".:;,'\"`").strip().lower()
    return word if word in KINDS else None


# ---------------------------------------------------------------------------- base model
def base_config(base: dict) -> ModelCfg:
    """The selector's base from its reference: {"path": DIR} or {"tiny": [model] fields}."""
    if "path" in base:
        return ModelCfg(path=base["path"])
    return ModelCfg(**base["tiny"])


def base_reference(m: ModelCfg) -> dict:
    return {"path": str(Path(m.path).resolve())} if m.path else {"tiny": dataclasses.asdict(m)}


@torch.no_grad()
def greedy_kinds(model, tok: QwenTokenizer, samples: list[PromptSample], batch_size: int = 8) -> list[str | None]:
    """Greedy generation of each sample's label, as a kind (None when it names none)."""
    cfg = RolloutCfg(max_new_tokens=MAX_LABEL_TOKENS, **GREEDY)
    out: list[str | None] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        batch = collate([(s.prompt_ids, [], s) for s in chunk], ENDOFTEXT_ID)
        dev, dt = next(model.parameters()).device, next(model.parameters()).dtype
        batch = dataclasses.replace(batch, **{k: v.to(dev, dtype=dt if v.is_floating_point() else None)
                                              for k, v in vars(batch).items() if isinstance(v, torch.Tensor)})
        ro = generate(model, batch, cfg, group_size=1, stop_ids=EOS_IDS, pad_id=ENDOFTEXT_ID)   # greedy: no RNG
        out += [to_kind(tok.decode([t for t in ids if t not in EOS_IDS])) for ids in ro.rows()]
    return out


class VPSelector:
    """A trained selector, frozen (eval mode, no gradients)."""

    def __init__(self, model, tok: QwenTokenizer, meta: dict):
        self.model, self.tok, self.meta = model.eval(), tok, meta
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.data_cfg = DataCfg(**meta["data"])
        self.unmapped = 0                  # generations that named no kind (mapped to "raw")

    @classmethod
    def from_dir(cls, path: str | Path, seed: int = 0, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> VPSelector:
        """The frozen selector on `device` in `dtype` (the trainer: its GPU and compute dtype, so a 3B
        selector neither runs on the CPU nor holds fp32 weights next to the policy)."""
        d = Path(path)
        if not (d / META).is_file() or not (d / ADAPTER).is_file():
            raise ValueError(f"{d}: not a VP-Selector directory (needs {META} and {ADAPTER}; "
                             "python -m visd_core.selector train writes them)")
        meta = json.loads((d / META).read_text())
        m = base_config(meta["base"])
        model = build_unsharded(m, seed=meta.get("base_seed", seed))
        load_adapter(model, d / ADAPTER)
        return cls(model.to(device=device, dtype=dtype), load_tokenizer(tokenizer_spec(m)), meta)

    def predict(self, records: list[Record], videos: list[SampledVideo] | None = None) -> list[str]:
        """One kind per record. `videos`: the records' decoded sampled frames (decode_frames);
        decoded here when not given."""
        if videos is not None and len(videos) != len(records):
            raise ValueError(f"{len(records)} records but {len(videos)} videos")
        videos = videos if videos is not None else [decode_frames(r, self.data_cfg) for r in records]
        samples = [selector_sample(r, v, self.tok, self.meta["sheet_max_pixels"]) for r, v in zip(records, videos)]
        kinds = greedy_kinds(self.model, self.tok, samples)
        bad = sum(k is None for k in kinds)
        if bad:
            self.unmapped += bad
            log.warning("VP-Selector: %d/%d outputs named no visual prompt; using 'raw' for them", bad, len(kinds))
        return [k or "raw" for k in kinds]
