"""Teacher and feedback variants of VISD under real torchrun (RL only, from the tiny init), on data
with bad records met mid-run; and, in one process, that Δ really reaches the update.

- current-policy teacher, sampled-token Δ (K = 0), λ reaching 0 at RL step 2: the judge and the
  teacher run at step 1 and neither runs at step 2 (visd §C.1: once λ = 0 the rest is GRPO);
- Sync-N teacher without feedback (visd Table 5 "w/o Feedback"): the teacher runs, the judge never;
  its data has a video cut off mid-stream, a record with NaN boxes and a JSONL line cut off: each is
  skipped with its reason, counted in data/skipped_*, and both ranks finish every step.
"""
import json
import math
import shutil

import pytest
import torch

from tests.data.test_data_video import _faststart_copy
from tests.trainer.launch import ENV, ROOT, final_params, rows, run

RL_ONLY = ["--data.num_frames=4", "--rollout.max_new_tokens=8", "--training.stage=rl", "--training.rl_steps=2",
           "--checkpoint.every=0", "--checkpoint.export=false", "--eval.every=0"]
ENV_CLEAN = {k: v for k, v in ENV.items() if k != "VISD_INJECT_NONFINITE"}


def judged(row: dict) -> bool:
    return any(k.startswith("judge/") for k in row)


def test_current_teacher_sampled_token_and_lambda_reaching_zero(data, tmp_path):
    dump = tmp_path / "current_k0"
    run([f"--data.train_path={data / 'train.jsonl'}", f"--job.dump_folder={dump}", *RL_ONLY,
         "--teacher.kind=current", "--visd.top_k=0", "--visd.lambda_steps=1"], env=ENV_CLEAN)
    m = rows(dump)
    assert m[1]["visd/lambda"] == 0.5 and m[2]["visd/lambda"] == 0.0
    assert judged(m[1]) and "time/teacher" in m[1] and m[1]["delta/abs_mean"] > 0   # Δ from the current policy
    assert not judged(m[2]) and "time/judge" not in m[2] and "time/teacher" not in m[2]   # λ = 0: neither runs
    assert m[2]["delta/abs_mean"] == 0.0 and m[2]["token_weight/mean"] == 1.0
    assert all(math.isfinite(m[s]["loss/policy"]) for s in (1, 2))
    assert final_params(dump, 0) == final_params(dump, 1)


@pytest.fixture
def bad_data(data, tmp_path):
    """The tiny dataset plus, first in file order, a record whose video is cut off mid-stream, a
    record with NaN boxes and, last, a JSONL line cut off by a crash."""
    out = tmp_path / "bad"
    shutil.copytree(data, out)
    lines = (out / "train.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    full = _faststart_copy(str(out / rec["video_path"]), str(tmp_path / "fs.mp4"))
    (out / "videos" / "cut.mp4").write_bytes(full[: int(len(full) * 0.3)])
    cut = {**rec, "id": "cut_video", "video_path": "videos/cut.mp4"}
    nan = {**rec, "id": "nan_boxes", "key_items": {k: {o: [[float("nan")] * 4 for _ in b] for o, b in v.items()}
                                                   for k, v in rec["key_items"].items()}}
    text = "\n".join([json.dumps(cut), json.dumps(nan)] + lines) + "\n" + lines[1][: len(lines[1]) // 2]
    (out / "train.jsonl").write_text(text)
    return out


def test_sync_teacher_without_feedback_on_bad_data(bad_data, tmp_path):
    dump = tmp_path / "sync_nofb"
    out = run([f"--data.train_path={bad_data / 'train.jsonl'}", f"--job.dump_folder={dump}", *RL_ONLY,
               "--teacher.kind=sync", "--teacher.sync_every=1", "--visd.feedback=false", "--data.shuffle=false"],
              env=ENV_CLEAN)
    m = rows(dump)
    assert sorted(m) == [1, 2]                                     # no step lost on either rank
    assert all(not judged(m[s]) and "time/teacher" in m[s] and m[s]["delta/abs_mean"] > 0 for s in (1, 2))
    assert all(math.isfinite(m[s]["loss/policy"]) for s in (1, 2))
    # rank 0 meets the cut video as its first sample; the other two never load
    assert m[2]["data/skipped_unreadable_video"] == 1.0
    assert m[2]["data/skipped_bad_json"] == 1.0 and m[2]["data/skipped_invalid"] == 1.0
    assert m[2]["data/skipped"] == 3.0
    assert "cut_video: cannot read video" in out and "skipped (bad_json)" in out and "skipped (invalid)" in out
    assert final_params(dump, 0) == final_params(dump, 1)


def test_delta_reaches_the_update(data, tmp_path, monkeypatch):
    """One RL step from the same init and the same rollouts, with λ = 0.5 (VISD) and with plain
    GRPO: the parameters must differ, and only through the token weights. A Δ wired to zero gives
    m_t = 1, Â = A and the GRPO update exactly — this test would then fail."""
    from visd_core import trainer as trainer_mod
    from visd_core.config import load_config
    from visd_core.rewards.reward import score_group as real_score_group

    def spread(record, completions, *args, **kw):       # distinct rewards, so advantages are not all 0
        out = real_score_group(record, completions, *args, **kw)
        return [type(r)(total=r.total + 0.25 * i, components=r.components, diagnosis=r.diagnosis)
                for i, r in enumerate(out)]

    monkeypatch.setattr(trainer_mod, "score_group", spread)
    params, metrics = {}, {}
    for name in ("visd", "grpo"):
        cfg = load_config(ROOT / "configs" / "tiny_synthetic.toml", [
            f"--data.train_path={data / 'train.jsonl'}", f"--job.dump_folder={tmp_path / name}", *RL_ONLY,
            "--training.rl_steps=1", "--training.rl_batch_size=1", f"--algorithm.name={name}"])
        t = trainer_mod.Trainer(cfg)
        try:
            t.train()
            params[name] = [p.detach().full_tensor().clone() for p in t.model.parameters()]
            metrics[name] = t.writer.read()[-1]
        finally:
            t.close()
    v, g = metrics["visd"], metrics["grpo"]
    assert v["reward/total"] == g["reward/total"] and v["adv/abs_mean"] == g["adv/abs_mean"] > 0   # same rollouts
    assert v["delta/abs_mean"] > 0 and g["delta/abs_mean"] == 0
    assert v["advantages_hat/abs_mean"] != g["advantages_hat/abs_mean"]
    assert v["loss/policy"] != g["loss/policy"] and v["optim/grad_norm"] != g["optim/grad_norm"]
    diff = max((a - b).abs().max().item() for a, b in zip(params["visd"], params["grpo"]))
    assert diff > 0, "VISD's update equals GRPO's: Δ did not reach the loss"


@pytest.mark.parametrize("on_fallback", ["warn", "abort"])
def test_a_judge_that_keeps_falling_back_is_loud(data, tmp_path, monkeypatch, caplog, on_fallback):
    """An OpenAI-compatible judge on loopback that answers every call with empty content (a reasoning
    model out of token budget): the trainer warns with the cause, or aborts when asked to."""
    import logging

    from tests.judge.fake_openai import FakeOpenAI
    from visd_core.config import load_config
    from visd_core.trainer import Trainer

    monkeypatch.setenv("VISD_TEST_JUDGE_KEY", "sk-test")
    with FakeOpenAI(default="empty") as server:
        cfg = load_config(ROOT / "configs" / "tiny_synthetic.toml", [
            f"--data.train_path={data / 'train.jsonl'}", f"--job.dump_folder={tmp_path / 'run'}", *RL_ONLY,
            "--training.rl_steps=1", "--training.rl_batch_size=1", "--judge.kind=http",
            f"--judge.base_url={server.url}", "--judge.api_key_env=VISD_TEST_JUDGE_KEY",
            f"--judge.on_fallback={on_fallback}", "--judge.max_fallback_frac=0.5"])
        t = Trainer(cfg)
        try:
            with caplog.at_level(logging.WARNING):
                if on_fallback == "abort":
                    with pytest.raises(RuntimeError, match="empty_content"):
                        t.train()
                else:
                    t.train()
        finally:
            t.close()
    assert server.count() >= 4                               # the judge was really called
    if on_fallback == "warn":
        assert t.writer.read()[-1]["judge/fallback_empty_content"] == 4.0
        assert "JUDGE FALLING BACK" in caplog.text and "empty_content" in caplog.text
