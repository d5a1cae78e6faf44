"""Video frames in, Qwen2.5-VL visual inputs out.

    clip = read_video("videos/s0001.mp4", num_frames=16)          # PyAV decode + uniform sampling
    vis = frames_to_image_inputs(clip.frames, max_pixels=401_408)   # one image per frame
    model(..., **vis.model_kwargs())        # pixel_values [P, 1176] + image_grid_thw [16, 3]

The papers' prompts show each sampled frame as its own image next to its timestamp
(`Frame {i} at {t}s: <|vision_start|><|image_pad|>...<|vision_end|>`, DESIGN.md), so the image path
is the main one; `frames_to_video_inputs` builds the `pixel_values_videos` form of a clip.
Resize, rescale, normalize and patch order are transformers' Qwen2VLImageProcessor's
(PIL bicubic resize of uint8 frames, x/255, OpenAI CLIP mean/std), checked value for value in
tests/data/test_video.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
import torch
from PIL import Image

from visd_core.data.resize import (MERGE_SIZE, MIN_PIXELS, PAPER_MAX_PIXELS, PATCH_SIZE,
                                   TEMPORAL_PATCH_SIZE, smart_resize)

IMAGE_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)   # OpenAI CLIP mean
IMAGE_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)    # OpenAI CLIP std


# ---------------------------------------------------------------------------------------------
# Decode and sample
# ---------------------------------------------------------------------------------------------

@dataclass
class SampledVideo:
    frames: np.ndarray      # [F, H, W, 3] uint8 RGB at the original resolution
    times: list[float]      # seconds from the first frame, one per sampled frame
    indices: list[int]      # positions of the sampled frames among all decoded frames
    fps: float              # the stream's average frame rate
    total_frames: int
    duration: float         # total_frames / fps, the "video is in total N seconds" of the prompt


def sample_frame_indices(total_frames: int, num_frames: int | None = 16, *, video_fps: float | None = None,
                         fps: float | None = None, min_frames: int = 4, max_frames: int = 768) -> list[int]:
    """Indices of F frames spread uniformly from the first to the last frame (qwen-vl-utils:
    linspace(0, total - 1, F).round()). Either a fixed `num_frames`, or `fps` frames per second of
    video clamped to [min_frames, max_frames]; never more frames than the video has."""
    if total_frames <= 0:
        raise ValueError("video has no frames")
    if (num_frames is None) == (fps is None):
        raise ValueError("give exactly one of num_frames and fps")
    if fps is not None:
        if not video_fps or video_fps <= 0 or fps <= 0:
            raise ValueError(f"sampling by fps needs positive fps and video_fps, got {fps} and {video_fps}")
        if not 1 <= min_frames <= max_frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
        n = min(max(round(total_frames / video_fps * fps), min_frames), max_frames)
    else:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        n = num_frames
    n = min(n, total_frames)
    return np.linspace(0, total_frames - 1, n).round().astype(int).tolist()


MAX_MISSING_FRAMES = 1     # a header may overcount by an edit-list frame; more means a cut-off file


def _count_frames(path: str) -> int:
    """Frame count by demuxing packets (no decode), for containers whose header has none."""
    with av.open(path) as container:
        return sum(1 for p in container.demux(video=0) if p.size > 0)


def _decode_at(path: str, wanted: list[int]) -> tuple[dict[int, tuple[float | None, np.ndarray]], int, float]:
    """Decode the stream once; keep (time, RGB array) of the wanted indices only.
    Returns those frames, the number of frames actually decoded and the stream's fps."""
    want = set(wanted)
    kept: dict[int, tuple[float | None, np.ndarray]] = {}
    start = None
    n = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        for n, frame in enumerate(container.decode(stream), start=1):
            if start is None:
                start = frame.time
            if n - 1 in want:
                t = None if frame.time is None or start is None else frame.time - start
                kept[n - 1] = (t, frame.to_ndarray(format="rgb24"))
    if fps <= 0:
        raise ValueError(f"{path}: stream reports no frame rate")
    return kept, n, fps


def read_video(path: str, num_frames: int | None = 16, *, fps: float | None = None,
               min_frames: int = 4, max_frames: int = 768) -> SampledVideo:
    """Decode `path` with PyAV and return the sampled frames with their timestamps in seconds."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        total = stream.frames
        video_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    total = total or _count_frames(path)
    indices = sample_frame_indices(total, num_frames, video_fps=video_fps, fps=fps,
                                   min_frames=min_frames, max_frames=max_frames)
    kept, decoded, video_fps = _decode_at(path, indices)
    if decoded < total - MAX_MISSING_FRAMES:
        # A file cut off mid-stream decodes its first frames and then simply ends: read as is it would
        # become a shorter video whose verified times and key frames no longer fit. Refuse it.
        raise ValueError(f"{path}: decoded {decoded} of the {total} frames its header declares "
                         "(truncated or corrupt)")
    if decoded != total:    # the header's count was off by a little: resample over the frames that exist
        total = decoded
        indices = sample_frame_indices(total, num_frames, video_fps=video_fps, fps=fps,
                                       min_frames=min_frames, max_frames=max_frames)
        kept, _, _ = _decode_at(path, indices)
    times = [kept[i][0] if kept[i][0] is not None else i / video_fps for i in indices]   # no pts: i/fps
    return SampledVideo(frames=np.stack([kept[i][1] for i in indices]), times=times, indices=indices,
                        fps=video_fps, total_frames=total, duration=total / video_fps)


# ---------------------------------------------------------------------------------------------
# Resize, normalize, patchify (transformers' Qwen2VLImageProcessor, step for step)
# ---------------------------------------------------------------------------------------------

def resize_frames(frames: np.ndarray, min_pixels: int = MIN_PIXELS,
                  max_pixels: int = PAPER_MAX_PIXELS) -> np.ndarray:
    """[F, H, W, 3] uint8 -> [F, h, w, 3] uint8 with (h, w) = smart_resize(H, W): PIL bicubic on
    uint8, as transformers' PIL backend does (its torchvision backend differs by a few levels)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be [F >= 1, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    h, w = smart_resize(frames.shape[1], frames.shape[2], min_pixels=min_pixels, max_pixels=max_pixels)
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])


def normalize(frames: np.ndarray) -> np.ndarray:
    """uint8 [F, h, w, 3] -> float32 [F, 3, h, w]: x/255 (computed in float64 as transformers
    does), then (x - mean) / std per channel."""
    x = (frames.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - IMAGE_MEAN) / IMAGE_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def patchify(frames_TCHW: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """[T, C, h, w] -> ([grid_t * grid_h * grid_w, C * 2 * 14 * 14], (grid_t, grid_h, grid_w)).

    Pairs of frames form one temporal patch; an odd count repeats the last frame (a single image
    becomes 2 identical slices). Rows are ordered (t, h-block, w-block, h-in-block, w-in-block)
    so each 2x2 group of patches that the merger fuses into one token is contiguous; columns are
    (C, t, ph, pw). This is transformers' Qwen2VL patch order."""
    T, C, h, w = frames_TCHW.shape
    if h % (PATCH_SIZE * MERGE_SIZE) or w % (PATCH_SIZE * MERGE_SIZE):
        raise ValueError(f"frame {w}x{h} is not a multiple of {PATCH_SIZE * MERGE_SIZE}; resize it first")
    if pad := -T % TEMPORAL_PATCH_SIZE:
        frames_TCHW = np.concatenate([frames_TCHW, np.repeat(frames_TCHW[-1:], pad, axis=0)])
    gt, gh, gw = frames_TCHW.shape[0] // TEMPORAL_PATCH_SIZE, h // PATCH_SIZE, w // PATCH_SIZE
    m, p = MERGE_SIZE, PATCH_SIZE
    x = frames_TCHW.reshape(gt, TEMPORAL_PATCH_SIZE, C, gh // m, m, p, gw // m, m, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)     # (gt, gh/m, gw/m, m, m, C, tps, p, p)
    return x.reshape(gt * gh * gw, C * TEMPORAL_PATCH_SIZE * p * p), (gt, gh, gw)


@dataclass
class VisualInputs:
    kind: str                   # "image" (one image per frame) or "video" (one clip)
    pixel_values: torch.Tensor  # [num_patches, 3 * 2 * 14 * 14] float32
    grid_thw: torch.Tensor      # [num_items, 3] int64: (t, h, w) in patches per image / clip
    second_per_grid_ts: list[float] | None = None   # video only: seconds spanned by one temporal patch

    def tokens_per_item(self) -> list[int]:
        """Merged LLM tokens per image (or clip): t * h * w / 4; the count of <|image_pad|>."""
        return (self.grid_thw.prod(dim=1) // (MERGE_SIZE * MERGE_SIZE)).tolist()

    def model_kwargs(self) -> dict:
        """The keyword arguments of Qwen2.5-VL's forward for these inputs."""
        if self.kind == "image":
            return {"pixel_values": self.pixel_values, "image_grid_thw": self.grid_thw}
        out = {"pixel_values_videos": self.pixel_values, "video_grid_thw": self.grid_thw}
        if self.second_per_grid_ts is not None:
            out["second_per_grid_ts"] = torch.tensor(self.second_per_grid_ts)
        return out


def frames_to_image_inputs(frames: np.ndarray, min_pixels: int = MIN_PIXELS,
                           max_pixels: int = PAPER_MAX_PIXELS) -> VisualInputs:
    """Each frame as its own image: `pixel_values` / `image_grid_thw` with grid (1, h/14, w/14)."""
    x = normalize(resize_frames(frames, min_pixels, max_pixels))
    patches, grids = zip(*(patchify(f[None]) for f in x))
    return VisualInputs("image", torch.from_numpy(np.concatenate(patches)),
                        torch.tensor(grids, dtype=torch.int64))


def frames_to_video_inputs(frames: np.ndarray, times: list[float] | None = None,
                           min_pixels: int = MIN_PIXELS, max_pixels: int = PAPER_MAX_PIXELS) -> VisualInputs:
    """The frames as one clip: `pixel_values_videos` / `video_grid_thw` with grid
    (ceil(F/2), h/14, w/14). With `times`, also Qwen2.5-VL's second_per_grid_ts (2 frame steps)."""
    patches, grid = patchify(normalize(resize_frames(frames, min_pixels, max_pixels)))
    spg = None
    if times is not None and len(times) >= 2:
        spg = [TEMPORAL_PATCH_SIZE * (times[-1] - times[0]) / (len(times) - 1)]
    return VisualInputs("video", torch.from_numpy(patches), torch.tensor([grid], dtype=torch.int64), spg)
