"""Checkpoints across real process restarts (2 gloo processes each time).

The straight run trains 4 steps and saves at step 2; fresh processes then auto-resume past a
planted incomplete folder, must see the saved state bitwise (model, optimizer, teacher, per-rank
extra and RNG), train steps 3-4 saving each (keep 2 then deletes step 2 and the incomplete folder).
Both runs must end with identical parameters, which the straight run's export (gathered from both
ranks) must hold, and which the 2-rank checkpoint restores in a 1-rank world. Error paths run in
this process (a world of one).
"""
import pytest
import torch
from safetensors.torch import load_file

from torchrun_launch import torchrun
from visd_core.checkpoint import MARKER, complete_checkpoints, load_checkpoint, resolve_resume, save_checkpoint
from visd_core.config import Model
from visd_core.model import build_model
from visd_core.model.build import to_hub_names
from visd_core.parallel import frozen_copy


def test_resume_is_bitwise_identical_to_straight_run(tmp_path, world1, caplog):
    torchrun("_worker_ckpt.py", "straight", str(tmp_path))
    torchrun("_worker_ckpt.py", "resume", str(tmp_path))
    straight = torch.load(tmp_path / "final_straight.pt")
    resumed = torch.load(tmp_path / "final_resume.pt")
    assert straight.keys() == resumed.keys() and len(straight) > 0
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    exported = load_file(tmp_path / "export" / "model.safetensors")     # gathered from 2 ranks' shards
    for k, v in straight.items():
        if not k.startswith("teacher/"):
            assert torch.equal(exported[to_hub_names(k)], v), k

    # DCP reshards: the 2-rank checkpoint loads into this 1-rank world, per-rank state falling back.
    model = build_model(Model(hidden_size=32, intermediate_size=64), world1, seed=123)   # the worker's TINY
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    teacher = frozen_copy(model, world1, param_dtype=torch.float32)
    step, extra = load_checkpoint(tmp_path / "ckpt" / "step_000004", world1, model=model, optimizer=opt,
                                  teacher=teacher)
    assert step == 4 and extra["data_pos"] == 8                      # rank 0's extra (2 * step + 0)
    assert "written by 2 ranks, resuming on 1" in caplog.text
    for n, p in model.named_parameters():
        assert torch.equal(p.full_tensor(), resumed[n]), n
    for n, p in teacher.named_parameters():
        assert torch.equal(p.full_tensor(), resumed[f"teacher/{n}"]), n


def test_resume_spec_errors_and_auto(tmp_path, world1):
    root = tmp_path / "ckpt"
    assert resolve_resume(root, "none", world1) is None
    assert resolve_resume(root, "auto", world1) is None          # nothing yet: start fresh
    (root / "step_000005").mkdir(parents=True)                   # no marker: incomplete
    assert resolve_resume(root, "auto", world1) is None
    assert not (root / "step_000005").exists()                   # a crashed save's leftovers are removed
    (root / "step_000005").mkdir(parents=True)
    with pytest.raises(ValueError, match="incomplete checkpoint"):
        resolve_resume(root, str(root / "step_000005"), world1)
    with pytest.raises(ValueError, match="no such directory"):
        resolve_resume(root, str(root / "step_000777"), world1)
    (root / "step_000003").mkdir()
    (root / "step_000003" / MARKER).write_text('{"step": 3, "world_size": 1, "teacher": false}')
    assert (root / "step_000005").exists()                       # named by the user: an error, kept
    assert resolve_resume(root, "auto", world1) == root / "step_000003"
    assert complete_checkpoints(root) == [root / "step_000003"] and not (root / "step_000005").exists()


def test_save_rejects_keep_below_two_and_load_rejects_missing_teacher(tmp_path, world1, tiny_fsdp):
    model, opt = tiny_fsdp
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 1, world1, model=model, optimizer=opt, keep=1)
    path = save_checkpoint(tmp_path, 1, world1, model=model, optimizer=opt, extra={"step": 1})
    with pytest.raises(ValueError, match="no teacher"):
        load_checkpoint(path, world1, model=model, optimizer=opt, teacher=model)
    with pytest.raises(ValueError, match="no COMMITTED marker"):
        load_checkpoint(tmp_path, world1, model=model, optimizer=opt)
    assert load_checkpoint(path, world1, model=model, optimizer=opt) == (1, {"step": 1})
