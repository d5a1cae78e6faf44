"""Validation during training under real torchrun (2 gloo ranks): val/* rows every [eval] every steps
on both ranks' shards, the SFT-vs-final table at the end, and no effect on training — the same
losses, rewards and final parameters as the run without validation (greedy decoding draws no
random numbers, so the training RNG streams are untouched) — and kill-and-resume with validation on
ends exactly like the uninterrupted validated run, val/* rows included."""
import pytest

from tests.trainer.launch import deterministic, final_params, kill_after_commit, overrides, rows, run


def validated(data, dump) -> list[str]:
    return overrides(data, dump) + [f"--data.val_path={data / 'val.jsonl'}", "--eval.every=1", "--eval.num_samples=3",
                                    "--eval.batch_size=1", "--eval.max_new_tokens=8"]


@pytest.fixture(scope="module")
def validated_run(data, tmp_path_factory):
    dump = tmp_path_factory.mktemp("validated")
    return dump, run(validated(data, dump))


def test_validation_rows_and_training_untouched(straight, validated_run):
    dump, out = validated_run
    a, b = rows(straight), rows(dump)
    assert sorted(b) == sorted(a) == [1, 2, 3, 4]
    for step in b:
        assert b[step]["val/n"] == 3                    # 2 records on rank 0, 1 on rank 1 (+1 padding decode)
        assert 0 <= b[step]["val/format_rate"] <= 100 and "val/reward" in b[step] and b[step]["time/val"] > 0
        trained = {k: v for k, v in deterministic(b[step]).items() if not k.startswith("val/")}
        assert trained == deterministic(a[step]), step
    assert final_params(dump) == final_params(straight)
    assert "validation (3 records)" in out and "SFT (step 2)" in out and "RL (step 4)" in out


def test_kill_and_resume_with_validation_is_exact(validated_run, data, tmp_path):
    straight, _ = validated_run
    dump = tmp_path / "killed"
    kill_after_commit(validated(data, dump), dump, step=2)
    run(validated(data, dump) + ["--checkpoint.resume=auto"])
    a, b = rows(straight), rows(dump)
    assert sorted(b) == [1, 2, 3, 4]
    for step in (3, 4):          # the resumed steps: training and validation metrics alike
        assert deterministic(b[step]) == deterministic(a[step]), step
        assert b[step]["val/n"] == 3
    assert final_params(dump) == final_params(straight)
