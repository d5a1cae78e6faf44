import pytest

from tests.visual_prompts.tiny_clip import save_tiny_clip
from visd_core.data.synthetic import generate


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    """A tiny random CLIP on disk (tiny_clip.py)."""
    return save_tiny_clip(str(tmp_path_factory.mktemp("tiny_clip")))


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """4 synthetic records with their videos: (folder, train.jsonl path)."""
    out = tmp_path_factory.mktemp("vp_synthetic")
    generate(str(out), n=4, seed=0, n_val=0, workers=1, progress=False)
    return out, out / "train.jsonl"
