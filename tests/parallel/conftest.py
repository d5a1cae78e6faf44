import pytest
import torch

from visd_core.config import Model
from visd_core.model import build_model
from visd_core.parallel import destroy_distributed, init_distributed


@pytest.fixture(scope="session")
def world1():
    """This pytest process as a world of one (gloo over an in-memory store)."""
    d = init_distributed("gloo")
    yield d
    destroy_distributed()


@pytest.fixture
def tiny_fsdp(world1):
    model = build_model(Model(), world1, seed=0)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)
