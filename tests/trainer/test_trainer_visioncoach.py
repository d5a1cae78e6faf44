"""GSPO and VisionCoach under real torchrun (2 gloo ranks): the recipe's metrics, the frozen KL
reference in the checkpoint, and a rank killed as a VisionCoach step begins — torchrun restarts the
job, it resumes from the last checkpoint (reference included) and ends exactly where the
uninterrupted run ends."""
import json
import math

import pytest

from tests.trainer.launch import ENV, deterministic, final_params, overrides, rows, run

# The real 151,936-row vocabulary end to end (the tiny default trains on a vocabulary subset): these runs
# and the kill-and-resume through them keep the path every real checkpoint takes.
VC = ["--model.vocab_subset=", "--algorithm.name=visioncoach", "--algorithm.kl_beta=0.04", "--reward.spatial=object_aware",
      # every sample hard, so every RL step re-rolls (the tiny model's rewards sit far below any k)
      "--visioncoach.hard_threshold=100", "--visioncoach.selector=gating", "--training.rl_steps=3",
      "--rollout.max_new_tokens=24"]


@pytest.fixture(scope="module")
def vc_straight(data, tmp_path_factory):
    dump = tmp_path_factory.mktemp("vc_straight")
    run(overrides(data, dump) + VC)
    return dump


def test_visioncoach_step_metrics(vc_straight):
    m = rows(vc_straight)
    assert sorted(m) == [1, 2, 3, 4, 5]
    assert not (vc_straight / "vocab_subset.json").exists()      # the full vocabulary
    rl = [m[s] for s in (3, 4, 5)]
    for r in rl:
        assert r["stage"] == "rl"
        assert r["vc/hard_frac"] == 1.0                                  # k = 100: every sample
        kinds = {k.removeprefix("vc/prompt/"): v for k, v in r.items() if k.startswith("vc/prompt/")}
        assert set(kinds) == {"api_prompt", "circle", "darken", "numpro", "raw"}
        assert sum(kinds.values()) == 4 - r["vc/skipped_prompt"]         # 2 ranks x 2 prompts
        assert kinds["api_prompt"] == kinds["circle"] == 0               # gating picks numpro / darken / raw
        assert r["kl/mean"] >= 0 and math.isfinite(r["kl/mean"])
        assert r["time/rerollout"] > 0 and r["time/reference"] > 0 and "time/sd" in r
        assert 0 <= r["vc/sd_candidates"] <= 4 and r["vc/sd_rows"] <= 2 * r["vc/sd_samples"]
        assert "visd/lambda" not in r and "loss/gspo" in r
    assert rl[0]["kl/mean"] == pytest.approx(0.0, abs=1e-6)             # step 1: the policy is the reference
    # (2 SFT steps leave every reward at 0, so nothing is distilled here: tests/algorithms/
    # test_visioncoach_step.py checks the distillation on scripted rewards)
    ck = vc_straight / "checkpoints"
    meta = json.loads((ck / "step_000004" / "COMMITTED").read_text())
    assert meta["reference"] is True and meta["teacher"] is False


def test_kill_and_resume_through_a_visioncoach_step_is_exact(vc_straight, data, tmp_path):
    dump = tmp_path / "vc_restarted"
    env = {**ENV, "VISD_INJECT_KILL": "step:5:1"}       # rank 1 dies as RL step 3 begins; newest checkpoint: 4
    out = run(overrides(data, dump) + VC, launcher=["--standalone", "--max-restarts=1"], env=env)
    assert "step_000004 at step 4" in out
    a, b = rows(vc_straight), rows(dump)
    assert sorted(b) == [1, 2, 3, 4, 5]
    assert deterministic(b[5]) == deterministic(a[5])
    assert final_params(dump) == final_params(vc_straight) == final_params(dump, rank=1)


def test_gspo_runs_with_kl_and_without_visual_prompts(data, tmp_path):
    dump = tmp_path / "gspo"
    run(overrides(data, dump) + ["--algorithm.name=gspo", "--algorithm.kl_beta=0.04"])
    m = rows(dump)
    rl = [m[s] for s in (3, 4)]
    for r in rl:
        assert "kl/mean" in r and "gspo/clip_frac" in r and not any(k.startswith("vc/") for k in r)
        assert "time/rerollout" not in r
    assert json.loads((dump / "checkpoints" / "step_000004" / "COMMITTED").read_text())["reference"] is True
