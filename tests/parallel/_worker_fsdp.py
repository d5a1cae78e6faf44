"""FSDP2 vs unsharded on the tiny model; run by test_fsdp.py as
    torchrun --standalone --nproc_per_node=2 tests/parallel/_worker_fsdp.py
Each rank asserts, then prints "RANK r OK"; any failure exits non-zero.
"""
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "model")]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

from tiny_batch import collate, tiny_sequences  # noqa: E402
from visd_core.config import Model  # noqa: E402
from visd_core.model import build_model, build_unsharded, completion_logits, map_completion_logits  # noqa: E402
from visd_core.parallel import (all_reduce_max, all_reduce_mean, all_reduce_sum, clip_grad_norm_,  # noqa: E402
                                destroy_distributed, ema_update_, frozen_copy, gathered, init_distributed)


def full(p):
    return p.full_tensor() if hasattr(p, "full_tensor") else p


def loss_of(model, batch):
    out = completion_logits(model, batch)
    assert out.logits.dtype == torch.float32 and out.logits.shape[0] == int(out.seq_lens.sum())
    return F.cross_entropy(out.logits, out.targets)


def main():
    d = init_distributed("gloo")
    assert d.world_size == 2
    mcfg = Model()
    seqs = tiny_sequences(4, seed=1)
    batches = [collate(seqs[0:2], left_pad=True), collate(seqs[2:4], left_pad=False)]   # rank r gets batches[r]

    ref = build_unsharded(mcfg, seed=3)
    model = build_model(mcfg, d, seed=3)
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(full(p), q), f"init differs from the unsharded seeded model at {n}"

    # Reference: the gradient of the mean of the two ranks' losses, unsharded, in one process.
    ref_losses = [loss_of(ref, b) for b in batches]
    (sum(ref_losses) / 2).backward()
    ref_grads = {n: q.grad.clone() for n, q in ref.named_parameters()}

    loss = loss_of(model, batches[d.rank])
    torch.testing.assert_close(loss, ref_losses[d.rank].detach(), rtol=1e-6, atol=1e-6)
    loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(full(p.grad), ref_grads[n], rtol=1e-4, atol=1e-6, msg=lambda m: f"{n}: {m}")

    # Activation checkpointing recomputes the same graph: same loss and grads.
    ac = build_model(Model(activation_checkpointing=True), d, seed=3)
    mlp_calls = []
    # a pre-hook: recomputation stops early, inside the MLP, once the last saved tensor is back
    ac.model.language_model.layers[0].mlp.register_forward_pre_hook(lambda *_: mlp_calls.append(1))
    loss_ac = loss_of(ac, batches[d.rank])
    loss_ac.backward()
    assert len(mlp_calls) == 2, "activation checkpointing must recompute the block in backward"
    torch.testing.assert_close(loss_ac, loss.detach(), rtol=1e-6, atol=1e-6)
    for (n, p), (_, q) in zip(ac.named_parameters(), model.named_parameters(), strict=True):
        torch.testing.assert_close(full(p.grad), full(q.grad), rtol=1e-5, atol=1e-7, msg=lambda m: f"AC {n}: {m}")

    # Grad clipping over DTensor shards == clipping the unsharded gradients.
    norm = clip_grad_norm_(list(model.parameters()), max_norm=0.5)
    ref_norm = torch.nn.utils.clip_grad_norm_(list(ref.parameters()), max_norm=0.5)
    torch.testing.assert_close(norm, ref_norm, rtol=1e-5, atol=0)
    assert norm > 0.5, "the test must actually clip"
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        torch.testing.assert_close(full(p.grad), q.grad, rtol=1e-4, atol=1e-7, msg=lambda m: f"clipped {n}: {m}")

    # The frozen teacher copy, an optimizer step on the student, then EMA on local shards only.
    teacher = frozen_copy(model, d, param_dtype=torch.float32)
    ref_teacher = copy.deepcopy(ref)
    assert not any(p.requires_grad for p in teacher.parameters())
    for (n, p), (_, q) in zip(teacher.named_parameters(), model.named_parameters(), strict=True):
        assert torch.equal(full(p), full(q)) and p.placements == q.placements, n
    for m in (model, ref):
        torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1).step()
    ema_update_(teacher, model, 0.25)
    with torch.no_grad():
        for p, q in zip(ref_teacher.parameters(), ref.parameters()):
            p.lerp_(q, 0.25)
    moved = 0
    for (n, p), (_, q) in zip(teacher.named_parameters(), ref_teacher.named_parameters(), strict=True):
        torch.testing.assert_close(full(p), q, rtol=1e-5, atol=1e-6, msg=lambda m: f"EMA {n}: {m}")
        moved += int(not torch.equal(q, dict(ref.named_parameters())[n]))
    assert moved > 0

    # The teacher's chunked scoring under FSDP (a registered forward method) == unsharded logits.
    with torch.no_grad():
        want = completion_logits(ref_teacher, batches[d.rank]).logits
    chunks, targets, _ = map_completion_logits(teacher, batches[d.rank], lambda z, y: (z.clone(), y), chunk_tokens=3)
    assert len(chunks) > 1
    torch.testing.assert_close(torch.cat([z for z, _ in chunks]), want, rtol=1e-5, atol=1e-5)
    assert torch.equal(torch.cat([y for _, y in chunks]), targets)

    # A no-grad forward leaves every parameter sharded; `gathered` keeps them whole across calls.
    def sharded(m):
        return all(isinstance(p, DTensor) for p in m.parameters())

    assert sharded(teacher)
    with gathered(teacher):
        with torch.no_grad():
            first = completion_logits(teacher, batches[d.rank]).logits
            assert not sharded(teacher), "gathered() must keep parameters unsharded between forwards"
            second = completion_logits(teacher, batches[d.rank]).logits
    assert sharded(teacher) and torch.equal(first, second)
    torch.testing.assert_close(first, want, rtol=1e-5, atol=1e-5)

    # Metric reductions: one collective per dict.
    vals = {"rank": float(d.rank), "one": 1.0}
    assert all_reduce_mean(vals, d) == {"rank": 0.5, "one": 1.0}
    assert all_reduce_sum(vals, d) == {"rank": 1.0, "one": 2.0}
    assert all_reduce_max(vals, d) == {"rank": 1.0, "one": 1.0}

    print(f"RANK {d.rank} OK", flush=True)
    destroy_distributed()


if __name__ == "__main__":
    main()
