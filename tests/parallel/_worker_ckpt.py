"""Checkpoint save / resume on the tiny model; run by test_checkpoint.py as
    torchrun --standalone --nproc_per_node=2 tests/parallel/_worker_ckpt.py straight|resume WORKDIR

straight: 4 training steps; saves at step 2 under WORKDIR/ckpt, dumping each rank's exact local
          state there for the resumed run to compare; exports the final policy to WORKDIR/export.
resume:   fresh processes; plants an incomplete step folder, auto-resumes (must pick step 2), checks
          the restored state bitwise, runs steps 3-4 saving each (keep 2: step 2 and the incomplete
          folder must be gone). Both modes dump the final parameters.
"""
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "model")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tiny_batch import collate, tiny_sequences  # noqa: E402
from visd_core.config import Model  # noqa: E402
from visd_core.checkpoint import complete_checkpoints, load_checkpoint, resolve_resume, save_checkpoint  # noqa: E402
from visd_core.model import build_model, completion_logits, export_hf  # noqa: E402
from visd_core.parallel import (barrier, clip_grad_norm_, destroy_distributed, ema_update_, frozen_copy,  # noqa: E402
                                init_distributed)

STEPS, SAVE_AT = 4, 2
TINY = Model(hidden_size=32, intermediate_size=64)     # the real vocabulary, half the width: less to write


def local(t):
    return (t.to_local() if hasattr(t, "to_local") else t).detach().clone()


def local_state(model, opt, teacher) -> dict:
    out = {f"model/{n}": local(p) for n, p in model.named_parameters()}
    out |= {f"teacher/{n}": local(p) for n, p in teacher.named_parameters()}
    for n, p in model.named_parameters():
        out |= {f"optim/{n}/{k}": local(v) for k, v in opt.state[p].items()}
    return out


def peek_rng() -> dict:
    """The next draw of each RNG, leaving every RNG where it was."""
    saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
    out = {"torch": torch.rand(3), "python": random.random(), "numpy": np.random.rand()}
    torch.set_rng_state(saved[0]), random.setstate(saved[1]), np.random.set_state(saved[2])
    return out


def train_step(step, d, model, opt, teacher):
    # The data and the lr depend on all three RNGs, so a resume that lost any of them diverges.
    seed = int(torch.randint(0, 2**31, (1,))) ^ random.getrandbits(20) ^ int(np.random.randint(0, 2**20))
    batch = collate(tiny_sequences(2, seed=seed))
    for g in opt.param_groups:
        g["lr"] = 1e-2 * (0.5 + random.random())
    out = completion_logits(model, batch)
    loss = F.cross_entropy(out.logits, out.targets)
    loss.backward()
    clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    ema_update_(teacher, model, 0.1)


def extra_for(step, rank):
    return {"step": step, "data_pos": 2 * step + rank, "schedule": {"lam": 0.5 - 0.1 * step}}


def main(mode: str, work: Path):
    d = init_distributed("gloo")
    torch.manual_seed(100 + d.rank)
    random.seed(200 + d.rank)
    np.random.seed(300 + d.rank)
    model = build_model(TINY, d, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    teacher = frozen_copy(model, d, param_dtype=torch.float32)
    ckpt, first = work / "ckpt", 1
    if mode == "resume":
        if d.is_main:   # a crashed save: newer, but without a marker
            (ckpt / "step_000099").mkdir()
            (ckpt / "step_000099" / ".metadata").write_bytes(b"partial")
        barrier()
        path = resolve_resume(ckpt, "auto", d)
        assert path is not None and path.name == f"step_{SAVE_AT:06d}", path
        step, extra = load_checkpoint(path, d, model=model, optimizer=opt, teacher=teacher)
        assert step == SAVE_AT and extra == extra_for(SAVE_AT, d.rank), (step, extra)
        want = torch.load(ckpt / f"state_rank{d.rank}.pt")
        got = local_state(model, opt, teacher) | peek_rng()
        assert want.keys() == got.keys()
        for k in want:
            assert (torch.equal(want[k], got[k]) if torch.is_tensor(want[k]) else want[k] == got[k]), k
        first = SAVE_AT + 1
    for step in range(first, STEPS + 1):
        train_step(step, d, model, opt, teacher)
        if (mode == "straight" and step == SAVE_AT) or mode == "resume":
            save_checkpoint(ckpt, step, d, model=model, optimizer=opt, teacher=teacher,
                            extra=extra_for(step, d.rank), keep=2)
        if mode == "straight" and step == SAVE_AT:    # what the resumed run must see right after loading
            torch.save(local_state(model, opt, teacher) | peek_rng(), ckpt / f"state_rank{d.rank}.pt")
    if mode == "resume":    # keep 2: step 2 deleted after step 4 committed; the incomplete folder cleaned
        names = sorted(p.name for p in ckpt.iterdir() if p.is_dir())
        assert names == ["step_000003", "step_000004"], names
        assert [p.name for p in complete_checkpoints(ckpt)] == names
    final = {n: p.full_tensor() for n, p in model.named_parameters()}
    final |= {f"teacher/{n}": p.full_tensor() for n, p in teacher.named_parameters()}
    if d.is_main:
        torch.save(final, work / f"final_{mode}.pt")
    if mode == "straight":    # the export gathers both ranks' shards
        export_hf(model, work / "export", d, dtype=torch.float32)
    print(f"RANK {d.rank} OK", flush=True)
    destroy_distributed()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
