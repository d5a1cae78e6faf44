"""Process group, FSDP2 sharding, and the sharded-parameter ops the trainer needs.

Launch: `torchrun --standalone --nproc_per_node=N train.py ...` (or `--nnodes/--rdzv-endpoint` for
many nodes). Without torchrun the same code runs as a world of one over a private in-memory store,
so every path (FSDP2, DCP, collectives) is the one a real run takes.

Sharding follows torchtitan: activation checkpointing first, then `fully_shard` per decoder block,
the vision tower as one unit, then the root (embeddings, final norm, lm_head). The teacher is a
second model sharded the same way, so its EMA update is elementwise on local shards — parameters
are never gathered whole (visd eq. 8).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor


PG_TIMEOUT = timedelta(minutes=30)     # torch's default for gloo and the store


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device      # cuda:<local_rank> under NCCL, cpu under gloo
    mesh: DeviceMesh          # 1-D data-parallel mesh over every rank (FSDP shards over it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# ---------------------------------------------------------------------------- process group
def init_distributed(backend: str = "auto") -> Dist:
    """Join torchrun's group (RANK/WORLD_SIZE/LOCAL_RANK in the env), or make a world of one."""
    if backend not in ("auto", "gloo", "nccl"):
        raise ValueError(f"parallel.backend = {backend!r} is not one of 'auto', 'gloo', 'nccl'")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("parallel.backend = 'nccl' needs CUDA; use 'gloo' (or 'auto') on a CPU machine")
    torchrun = "RANK" in os.environ
    rank = int(os.environ["RANK"]) if torchrun else 0
    world = int(os.environ["WORLD_SIZE"]) if torchrun else 1
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if torchrun:
            dist.init_process_group(backend, store=_attempt_store(rank, world), rank=rank, world_size=world,
                                    device_id=device if device.type == "cuda" else None)
        else:   # a private store: a lone process needs no MASTER_ADDR/port
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh(device.type, (world,), mesh_dim_names=("dp",))
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=device, mesh=mesh)


def _attempt_store(rank: int, world: int) -> dist.Store:
    """torchrun's rendezvous store, with every key under this attempt's prefix.

    After a `--max-restarts` restart the agent's store can still hold the previous attempt's keys
    (torch says it makes a new store per retry; with --standalone it did not here): gloo then read
    a dead rank's address, dialed it for 10 s and failed the restart (seen 1 run in 4 on this
    machine; pytorch#167288 reports the NCCL form). A prefix per TORCHELASTIC_RESTART_COUNT keeps
    each attempt's rendezvous apart. Same server roles as torch's env:// handler."""
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":    # the agent hosts the server
        store = dist.TCPStore(host, port, world, is_master=False, timeout=PG_TIMEOUT)
    else:                                                            # rank 0 hosts it
        store = dist.TCPStore(host, port, world, is_master=rank == 0, timeout=PG_TIMEOUT, multi_tenant=True)
    return dist.PrefixStore(f"/visd/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    dist.barrier()


# ---------------------------------------------------------------------------- FSDP2
def shard_model(model: nn.Module, d: Dist, *, param_dtype: torch.dtype,
                activation_checkpointing: bool = False) -> nn.Module:
    """Shard a Qwen2.5-VL model in place (on any device, meta included) and return it.

    Sharded parameters stay float32 (the optimizer's master copy); `param_dtype` is what forward
    and backward compute in (bf16 on CUDA); gradients are reduced in float32. Every unit, root
    included, reshards after forward: a no-grad forward (rollout, teacher) leaves nothing gathered,
    so parameters are always DTensor shards between calls. A decode loop that wants them gathered
    across steps uses `gathered(model)`.
    """
    if activation_checkpointing:   # must wrap the blocks before fully_shard sees them
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    kw = dict(mesh=d.mesh, mp_policy=MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32),
              reshard_after_forward=True)
    for block in model.model.language_model.layers:
        fully_shard(block, **kw)
    fully_shard(model.model.visual, **kw)
    fully_shard(model, **kw)
    for name in getattr(model, "fsdp_forward_methods", ()):   # extra entries that use root params
        register_fsdp_forward_method(model, name)
    return model


@contextmanager
def gathered(model: nn.Module):
    """Keep every FSDP unit's parameters gathered from their first forward inside the block until
    its end (one all-gather per unit for a whole decode loop instead of one per token); resharded
    on exit. Costs the full model's compute-dtype size in memory while inside."""
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for u in units:
        u.set_reshard_after_forward(False, recurse=False)
    try:
        yield model
    finally:
        for u in units:
            u.set_reshard_after_forward(True, recurse=False)
            u.reshard()


def frozen_copy(model: nn.Module, d: Dist, *, param_dtype: torch.dtype) -> nn.Module:
    """A second model sharded exactly like `model`, holding a copy of its local shards and buffers;
    frozen (no grads, eval mode). `model` is a transformers model built by visd_core.model."""
    with torch.device("meta"):
        twin = type(model)._from_config(model.config, attn_implementation=model.config._attn_implementation,
                                        dtype=torch.float32)
    shard_model(twin, d, param_dtype=param_dtype)
    twin.to_empty(device=d.device)
    twin.requires_grad_(False)
    twin.eval()
    with torch.no_grad():
        for b_t, b_s in zip(twin.buffers(), model.buffers(), strict=True):
            b_t.copy_(b_s)    # includes non-persistent ones (RoPE frequencies) that no state dict carries
    copy_params_(twin, model)
    return twin


def _local_pairs(dst: nn.Module, src: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Matching local shards of two identically sharded models (checked by name, shape, placement)."""
    out_d, out_s = [], []
    for (n_d, p_d), (n_s, p_s) in zip(dst.named_parameters(), src.named_parameters(), strict=True):
        if n_d != n_s or p_d.shape != p_s.shape:
            raise ValueError(f"models differ: {n_d} {tuple(p_d.shape)} vs {n_s} {tuple(p_s.shape)}")
        if isinstance(p_d, DTensor) != isinstance(p_s, DTensor) or (
                isinstance(p_d, DTensor) and p_d.placements != p_s.placements):
            raise ValueError(f"{n_d} is sharded differently in the two models")
        out_d.append(p_d.to_local() if isinstance(p_d, DTensor) else p_d)
        out_s.append(p_s.to_local() if isinstance(p_s, DTensor) else p_s)
    return out_d, out_s


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, rate: float) -> None:
    """θ̄ ← (1 − rate)·θ̄ + rate·θ on each rank's local shards (visd eq. 8); no communication."""
    t, s = _local_pairs(teacher, student)
    torch._foreach_lerp_(t, s, rate)    # t + rate·(s − t)


@torch.no_grad()
def copy_params_(dst: nn.Module, src: nn.Module) -> None:
    """dst ← src on local shards (the Sync-N teacher's refresh; the frozen copy's initial state)."""
    d, s = _local_pairs(dst, src)
    torch._foreach_copy_(d, s)


def clip_grad_norm_(params, max_norm: float) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most `max_norm`; returns the norm before clipping
    (a plain scalar tensor, identical on every rank). A non-finite norm leaves non-finite gradients:
    the caller skips that update on every rank (the norm is the same everywhere, so they agree)."""
    params = list(params)
    norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None], norm_type=2.0)
    if isinstance(norm, DTensor):        # a partial norm per shard: full_tensor() all-reduces it
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)     # takes params, scales their .grad
    return norm


# ---------------------------------------------------------------------------- metric reductions
# Every rank passes the same keys in the same order; values are floats (float64 on the wire).
def _reduce(values: dict[str, float], op, d: Dist) -> torch.Tensor:
    t = torch.tensor([float(values[k]) for k in values], dtype=torch.float64, device=d.device)
    dist.all_reduce(t, op=op)     # one collective for the whole dict
    return t


def all_reduce_mean(values: dict[str, float], d: Dist) -> dict[str, float]:
    return {k: v / d.world_size for k, v in zip(values, _reduce(values, dist.ReduceOp.SUM, d).tolist())}


def all_reduce_sum(values: dict[str, float], d: Dist) -> dict[str, float]:
    return dict(zip(values, _reduce(values, dist.ReduceOp.SUM, d).tolist()))


def all_reduce_max(values: dict[str, float], d: Dist) -> dict[str, float]:
    return dict(zip(values, _reduce(values, dist.ReduceOp.MAX, d).tolist()))
