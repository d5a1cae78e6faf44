"""Render a record's key frames under visual prompts, one PNG each, to look at them.

    python -m visd_core.visual_prompts --data data/synthetic/train.jsonl --id train_00002 --kind darken --out /tmp/vp
    python -m visd_core.visual_prompts --data ... --id ... --kind all --out /tmp/vp     # + /tmp/vp/kinds.png

writes <out>/<id>_f<i>_<kind>.png for every key frame i (1-based sampled frame number, as the prompt
numbers frames) under the kind and under raw for comparison, and prints the paths. `--kind all`
takes every kind (api_prompt only with --clip-path) and also writes <out>/kinds.png, the first key
frame with boxes under each kind side by side. Errors are one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visd_core.config import Data as DataCfg
from visd_core.data.model_inputs import decode_frames
from visd_core.data.reader import JsonlReader
from visd_core.visual_prompts.api_prompt import ClipRelevance
from visd_core.visual_prompts.key_frames import key_frame_boxes
from visd_core.visual_prompts.kinds import KINDS, apply_visual_prompt

SHEET_MIN_HEIGHT = 240      # px: small frames (the synthetic 160x120) are enlarged, nearest, to be seen
SHEET_LABEL = 16            # px: font size of the kind's name under each tile


def fail(message: str) -> None:
    print(f"visd_core.visual_prompts: error: {message}", file=sys.stderr)
    sys.exit(2)


def contact_sheet(tiles: list[tuple[str, np.ndarray]]) -> Image.Image:
    """The frames side by side, each with its kind's name underneath."""
    H, W = tiles[0][1].shape[:2]
    scale = max(1, -(-SHEET_MIN_HEIGHT // H))
    tw, th = W * scale, H * scale
    sheet = Image.new("RGB", (tw * len(tiles), th + SHEET_LABEL + 6), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=SHEET_LABEL)
    for k, (name, frame) in enumerate(tiles):
        sheet.paste(Image.fromarray(frame).resize((tw, th), Image.NEAREST), (k * tw, 0))
        draw.text((k * tw + tw // 2, th + 3), name, fill="black", font=font, anchor="ma")
    return sheet


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="JSONL of records (visd_core/data/schema.py)")
    ap.add_argument("--id", required=True, help="the record's id")
    ap.add_argument("--kind", required=True, help=f"one of {', '.join(KINDS)}, or all")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--num-frames", type=int, default=16, help="frames sampled from the video (papers: 16)")
    ap.add_argument("--clip-path", default=None, help="local CLIP directory, needed for api_prompt")
    ap.add_argument("--video-root", default=None, help="folder of relative video paths (default: the JSONL's)")
    args = ap.parse_args(argv)

    if args.kind == "all":
        kinds = [k for k in KINDS if k != "api_prompt" or args.clip_path]
        if not args.clip_path:
            print("api_prompt skipped: no --clip-path", file=sys.stderr)
    elif args.kind in KINDS:
        kinds = [args.kind] if args.kind == "raw" else [args.kind, "raw"]
    else:
        fail(f"unknown kind {args.kind!r} (valid: {', '.join(KINDS)}, all)")
    if args.kind == "api_prompt" and not args.clip_path:
        fail("api_prompt needs a CLIP model: pass --clip-path DIR (a local CLIP saved with save_pretrained)")
    if args.num_frames < 1:
        fail(f"--num-frames must be >= 1, got {args.num_frames}")
    if not os.path.isfile(args.data):
        fail(f"{args.data}: no such file")
    try:
        reader = JsonlReader(args.data, video_root=args.video_root, shuffle=False)
    except ValueError as e:
        fail(str(e))
    record = next((r for r in reader.records if r.id == args.id), None)
    if record is None:
        fail(f"no usable record with id {args.id!r} in {args.data} ({len(reader.records)} records)")
    try:
        clip = ClipRelevance.from_pretrained(args.clip_path) if "api_prompt" in kinds else None
        video = decode_frames(record, DataCfg(num_frames=args.num_frames))
    except (ValueError, OSError) as e:      # SampleError is a ValueError
        fail(str(e))
    shown = key_frame_boxes(video.times, record)
    if not shown:
        fail(f"record {record.id} has no key frame among its {len(video.times)} sampled frames: nothing to prompt")

    os.makedirs(args.out, exist_ok=True)
    digits = len(str(len(video.times)))
    sheet_frame = next((t for t, boxes in shown.items() if boxes), next(iter(shown)))
    tiles = []
    for kind in kinds:
        frames = apply_visual_prompt(video.frames, video.times, record, kind, clip=clip)
        for t in shown:
            path = os.path.join(args.out, f"{record.id}_f{t + 1:0{digits}d}_{kind}.png")
            Image.fromarray(frames[t]).save(path)
            print(path)
        tiles.append((kind, frames[sheet_frame]))
    if args.kind == "all":
        path = os.path.join(args.out, "kinds.png")
        contact_sheet(tiles).save(path, optimize=True)
        print(path)


if __name__ == "__main__":
    main()
