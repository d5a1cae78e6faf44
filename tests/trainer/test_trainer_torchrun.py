"""The trainer under real torchrun (2 processes, gloo) on a tiny synthetic dataset: finite losses,
parameters that change and agree across ranks, an injected NaN on one rank skipping the step on
both, and kill-and-resume giving the same metrics as the uninterrupted run."""
import json
import math

from tests.trainer.launch import deterministic, kill_after_commit, overrides, rows, run


def test_finite_changed_agreeing_and_nan_skipped_on_both_ranks(straight):
    m = rows(straight)
    assert sorted(m) == [1, 2, 3, 4]
    assert [m[s]["stage"] for s in (1, 2, 3, 4)] == ["sft", "sft", "rl", "rl"]
    # step 2: rank 1's loss was made NaN; the update was skipped on every rank and counted
    assert m[2]["optim/skipped_nonfinite"] == 1.0 and m[2]["optim/nonfinite_total"] == 1.0
    assert [m[s]["optim/skipped_nonfinite"] for s in (1, 3, 4)] == [0.0, 0.0, 0.0]
    assert math.isfinite(m[1]["sft/loss"]) and all(math.isfinite(m[s]["loss/policy"]) for s in (3, 4))
    assert all(math.isfinite(m[s]["reward/total"]) for s in (3, 4))
    assert m[3]["visd/lambda"] == 0.5 and 0 < m[4]["visd/lambda"] < 0.5
    ranks = [json.loads((straight / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]                          # both ranks hold the same full parameters
    assert ranks[0]["before"] != ranks[0]["after"]       # and training changed them
    rows_of_model = json.loads((straight / "vocab_subset.json").read_text())   # the tiny default's subset
    assert 278 < len(rows_of_model) < 1000
    ck = straight / "checkpoints"
    assert (ck / "step_000002" / "COMMITTED").is_file() and (ck / "step_000004" / "COMMITTED").is_file()


def test_kill_and_resume_matches_the_straight_run(straight, data, tmp_path):
    dump = tmp_path / "killed"
    kill_after_commit(overrides(data, dump), dump, step=2)    # kill -9 the whole job right after the commit
    run(overrides(data, dump) + ["--checkpoint.resume=auto"])
    a, b = rows(straight), rows(dump)
    assert sorted(b) == [1, 2, 3, 4]
    for step in (3, 4):
        assert deterministic(b[step]) == deterministic(a[step]), step
    assert json.loads((dump / "rank0.json").read_text())["after"] == json.loads((straight / "rank0.json").read_text())["after"]
