import math

import pytest
import torch

from visd_core.algorithms.advantages import group_advantages
from visd_core.algorithms.schedules import lr_factor, stage_lr, visd_lambda
from visd_core.config import Optim, load_config


def test_group_advantages_hand_worked():
    # group 1: rewards 1, 2, 3, 4 -> mean 2.5, unbiased std sqrt(5/3)
    # group 2: all equal -> A = 0 exactly
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.7, 0.7, 0.7, 0.7])
    a = group_advantages(r, 4, eps=1e-4)
    std = math.sqrt(5 / 3)
    expect = [(x - 2.5) / (std + 1e-4) for x in (1, 2, 3, 4)] + [0.0] * 4
    assert torch.allclose(a, torch.tensor(expect), atol=1e-6)
    assert (a[4:] == 0).all()
    assert abs(a[:4].sum().item()) < 1e-6     # zero-mean within a group


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match=">= 2"):
        group_advantages(torch.zeros(3), 1)


def test_visd_lambda_schedule_matches_paper():
    # λ₀ = 0.5 over 600 steps (visd §C.2): t=1 -> 0.5, linear, t=600 -> 0.5/600, t>600 -> 0
    assert visd_lambda(1, 0.5, 600) == 0.5
    assert visd_lambda(301, 0.5, 600) == pytest.approx(0.25)
    assert visd_lambda(600, 0.5, 600) == pytest.approx(0.5 / 600)
    assert visd_lambda(601, 0.5, 600) == 0.0
    assert visd_lambda(5000, 0.5, 600) == 0.0
    vals = [visd_lambda(t, 0.5, 600) for t in range(1, 602)]
    assert all(a > b for a, b in zip(vals, vals[1:]))     # strictly decreasing to 0
    assert visd_lambda(1, 0.5, 0) == 0.0                  # no annealing window: GRPO
    with pytest.raises(ValueError):
        visd_lambda(0, 0.5, 600)


def test_lr_factor():
    assert lr_factor(1, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(70, 100, 0, "constant") == 1.0


def test_stage_lr_rl_overrides():
    o = Optim(lr=1e-2, rl_lr=1e-3, warmup_steps=10, schedule="cosine", rl_warmup_steps=0, rl_schedule="constant")
    assert stage_lr(o, "sft", 5, 100) == pytest.approx(5e-3)                      # SFT: warmup
    assert stage_lr(o, "sft", 100, 100) == pytest.approx(0.0, abs=1e-12)          # SFT: cosine to 0
    assert stage_lr(o, "rl", 1, 30) == stage_lr(o, "rl", 30, 30) == 1e-3          # RL: flat, no warmup
    same = Optim(lr=1e-2, warmup_steps=4, schedule="cosine")                       # unset: RL inherits all
    assert [stage_lr(same, "rl", s, 20) for s in (2, 12)] == [stage_lr(same, "sft", s, 20) for s in (2, 12)]


def test_rl_schedule_config_is_validated(tmp_path):
    with pytest.raises(ValueError, match="rl_schedule"):
        load_config(None, ["--optim.rl_schedule=linear"])
    with pytest.raises(ValueError, match="rl_warmup_steps"):
        load_config(None, ["--optim.rl_warmup_steps=-2"])
