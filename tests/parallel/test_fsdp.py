"""FSDP2 on 2 gloo processes == one unsharded process: init, loss, gradients (with and without
activation checkpointing), grad clipping over DTensor shards, the frozen teacher copy, EMA on local
shards, chunked teacher scoring, metric all-reduces. The assertions live in _worker_fsdp.py."""
from torchrun_launch import torchrun


def test_fsdp_matches_unsharded():
    torchrun("_worker_fsdp.py")
