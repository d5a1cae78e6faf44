import math

import pytest

from visd_core.config import Reward
from visd_core.rewards.temporal import (keyframe_proximity, nearest, segment_inclusion, sigma_at, sigma_progress,
                                        training_progress)


def test_sigma_schedule_start_switch_and_end():
    cfg = Reward()                                      # σ = 4(1 − p) while p < 0.75, then 1
    assert sigma_at(0.0, cfg) == 4.0
    assert sigma_at(0.5, cfg) == 2.0
    assert sigma_at(0.74, cfg) == pytest.approx(1.04)
    assert sigma_at(0.75, cfg) == 1.0
    assert sigma_at(1.0, cfg) == 1.0
    assert sigma_at(0.5, Reward(sigma_max=2.0, sigma_min=0.5, sigma_switch=0.9)) == 1.0


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.nan])
def test_sigma_rejects_progress_outside_training(bad):
    with pytest.raises(ValueError, match="progress"):
        sigma_at(bad, Reward())


def test_training_progress_is_one_based():
    assert training_progress(0, 100) == 0.01
    assert training_progress(99, 100) == 1.0
    assert training_progress(150, 100) == 1.0
    with pytest.raises(ValueError):
        training_progress(0, 0)


def test_sigma_clock_is_reward_sigma_steps_not_the_rl_stage():
    # the 7B recipe stops at step 1200 of the paper's 2250-step epoch: σ there is 4·(1 − 1200/2250),
    # not the 1 that a clock over rl_steps = 1200 would give
    cfg = Reward(sigma_steps=2250)
    assert sigma_progress(1, cfg, rl_steps=1200) == 1 / 2250                  # 1-based RL step
    assert sigma_progress(1200, cfg, rl_steps=1200) == pytest.approx(1200 / 2250)
    assert sigma_at(sigma_progress(1200, cfg, rl_steps=1200), cfg) == pytest.approx(4 * (1 - 1200 / 2250))
    assert sigma_progress(300, Reward(sigma_steps=200), rl_steps=400) == 1.0   # past the horizon: σ_min
    assert sigma_progress(100, Reward(), rl_steps=200) == 0.5                   # 0 = the RL stage's length


def test_nearest_breaks_ties_toward_the_earlier_time():
    ts = [1.0, 3.0, 7.0]
    assert [nearest(ts, t) for t in (-5.0, 1.9, 2.0, 2.1, 5.0, 100.0)] == [0, 0, 0, 1, 1, 2]


def test_segment_inclusion_eq11():
    assert segment_inclusion([2.0, 3.0, 9.0, 5.0], (2.0, 5.0)) == 0.75   # both ends inclusive
    assert segment_inclusion([], (2.0, 5.0)) == 0.0                       # no claims
    assert segment_inclusion([3.0], (3.0, 3.0)) == 1.0                    # a zero-length window holds its point


def test_keyframe_proximity_eq12_hand_worked():
    # Δt = 0 and Δt = 2 (to 5.0, nearer than 1.0) with σ = 2: (1 + e^(−4/8)) / 2
    assert keyframe_proximity([1.0, 7.0], [1.0, 5.0], 2.0) == pytest.approx((1 + math.exp(-0.5)) / 2)
    assert keyframe_proximity([], [1.0], 2.0) == 0.0                    # no claims
    assert keyframe_proximity([1.0], [], 2.0) == 0.0                    # no supervision


def test_keyframe_proximity_tightens_as_sigma_anneals():
    early, late = sigma_at(0.0, Reward()), sigma_at(0.9, Reward())
    assert keyframe_proximity([3.0], [1.0], early) == pytest.approx(math.exp(-4 / 32))
    assert keyframe_proximity([3.0], [1.0], late) == pytest.approx(math.exp(-4 / 2))


def test_visioncoach_eq6_inside_a_window_scores_one():
    # 4.0 is inside [3, 6]; 8.0 is 2 s past the window's end (nearer than the key frame at 1.0)
    r = keyframe_proximity([4.0, 8.0], [1.0], 1.0, windows=((3.0, 6.0),))
    assert r == pytest.approx((1 + math.exp(-2)) / 2)
