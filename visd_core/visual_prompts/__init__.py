"""VisionCoach's visual prompts (visioncoach §3.2 / App. C.1): marks drawn on the key frames of a
hard sample, plus a one-sentence hint appended to its question (Alg. 1 line 9).

    frames2 = apply_visual_prompt(video.frames, video.times, record, "circle")   # [T, H, W, 3] uint8, new
    record2 = with_hint(record, "circle")          # question + " Red circles mark the key objects ..."
    sample = load_prompt(record, cfg.data, tok, visual_prompt="circle")       # both, as model inputs

Kinds (KINDS, App. C.4's label set): api_prompt (CLIP relevance shading, needs a local CLIP:
visioncoach.clip_path / --clip-path), circle (red ellipse around each key object), darken (dim
outside the key objects), numpro (red frame number, bottom-right), raw (unchanged). Only key frames
are marked: each record key frame goes to the nearest sampled frame (key_frames.py).

One key frame of a record under every kind, and the contact sheet docs/visual_prompts/kinds.png:

    python -m visd_core.visual_prompts --data data/synthetic/train.jsonl --id train_00002 --kind all \\
        --out /tmp/vp && cp /tmp/vp/kinds.png docs/visual_prompts/kinds.png

(with data/synthetic from `python -m visd_core.data.synthetic --out data/synthetic --n 4 --seed 0`).
That sheet leaves api_prompt out: no real CLIP is on disk here, and a random one shades noise. Pass
--clip-path to a real CLIP to include it.
"""
from visd_core.visual_prompts.api_prompt import ClipRelevance
from visd_core.visual_prompts.key_frames import key_frame_boxes
from visd_core.visual_prompts.kinds import HINTS, KINDS, NEEDS_CLIP, apply_visual_prompt, check_kind, with_hint

__all__ = ["ClipRelevance", "HINTS", "KINDS", "NEEDS_CLIP", "apply_visual_prompt", "check_kind",
           "key_frame_boxes", "with_hint"]
