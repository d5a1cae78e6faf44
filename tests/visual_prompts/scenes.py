"""Frames and records with known key frames and boxes, for the visual prompt tests."""
import numpy as np

from visd_core.data.schema import KeyFrame, Record


def noise_frames(T: int, H: int, W: int, seed: int = 0, high: int = 256) -> np.ndarray:
    """[T, H, W, 3] uint8 noise over 0..high-1: every level occurs, so rounding is exercised."""
    return np.random.default_rng(seed).integers(0, high, (T, H, W, 3), dtype=np.uint8)


def record_with(key_frames: list[tuple[float, int]], items: dict[int, dict[str, list[list[float]]]],
                question: str = "Where is the red square?") -> Record:
    """A visual_qa record with these (time, idx) key frames and {idx: {object: [boxes]}} items."""
    return Record(id="r0", task="visual_qa", question=question, answer="red square", video_path="v.mp4",
                  key_frames=[KeyFrame(time=t, idx=i) for t, i in key_frames], key_items=items)
