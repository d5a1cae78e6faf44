"""init_distributed without torchrun is a world of one; bad backends are one-line ValueErrors."""
import pytest
import torch

from visd_core.parallel import all_reduce_mean, init_distributed


def test_world_of_one(world1):
    assert (world1.rank, world1.world_size, world1.device, world1.is_main) == (0, 1, torch.device("cpu"), True)
    assert init_distributed("gloo").world_size == 1            # a second call joins the same group
    assert all_reduce_mean({"loss": 2.5, "n": 3.0}, world1) == {"loss": 2.5, "n": 3.0}


def test_unknown_backend():
    with pytest.raises(ValueError, match="not one of"):
        init_distributed("mpi")


@pytest.mark.skipif(torch.cuda.is_available(), reason="only a CPU-only machine rejects nccl")
def test_nccl_without_cuda():
    with pytest.raises(ValueError, match="needs CUDA"):
        init_distributed("nccl")
