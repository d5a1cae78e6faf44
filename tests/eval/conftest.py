"""Session fixtures of the evaluation-runner tests: synthetic videos, and the tiny model exported
the way the trainer exports it (one process, a world of one)."""
import pytest
import torch

from visd_core.config import Model
from visd_core.data.synthetic import MAX_PIXELS, generate
from visd_core.model.build import build_unsharded
from visd_core.model.export import export_hf
from visd_core.parallel import destroy_distributed, init_distributed


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """3 synthetic records and their 160x120 videos (videos/train_0000{0,1,2}.mp4)."""
    out = tmp_path_factory.mktemp("synthetic")
    generate(str(out), n=3, seed=3, n_val=0, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def world_of_one():
    d = init_distributed("gloo")
    yield d
    destroy_distributed()


@pytest.fixture(scope="session")
def exported(tmp_path_factory, world_of_one):
    """The tiny policy as an exported directory, with the synthetic data's pixel budget."""
    model = build_unsharded(Model(), seed=1)
    return export_hf(model, tmp_path_factory.mktemp("export") / "policy", world_of_one, dtype=torch.float32,
                     max_pixels=MAX_PIXELS)
