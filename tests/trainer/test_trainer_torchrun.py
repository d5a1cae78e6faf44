"""The trainer under real torchrun (2 processes, gloo) on a tiny synthetic dataset: finite losses,
parameters that change and agree across ranks, an injected NaN on one rank skipping the step on
both, and kill-and-resume giving the same metrics as the uninterrupted run."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from visd_core.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "_run_trainer.py"
# Timing, memory and judge latency differ between runs; everything else must be identical.
NONDETERMINISTIC = ("time/", "perf/", "mem/", "judge/latency", "judge/time_s")


def overrides(data: Path, dump: Path) -> list[str]:
    return [f"--data.train_path={data / 'train.jsonl'}", f"--job.dump_folder={dump}",
            "--data.num_frames=4", "--rollout.max_new_tokens=12", "--training.sft_steps=2", "--training.rl_steps=2",
            "--training.sft_teacher_view_frac=0.5", "--visd.lambda_steps=10", "--checkpoint.every=2",
            "--checkpoint.export=false"]


def torchrun_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
            str(ROOT / "configs" / "tiny_synthetic.toml"), *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VISD_INJECT_NONFINITE": "2:1"}


def run(args: list[str]) -> None:
    r = subprocess.run(torchrun_cmd(args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]


def rows(dump: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (dump / "metrics.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate(str(out), n=12, seed=3, n_val=6, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    dump = tmp_path_factory.mktemp("straight")
    run(overrides(data, dump))
    return dump


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
    ck = straight / "checkpoints"
    assert (ck / "step_000002" / "COMMITTED").is_file() and (ck / "step_000004" / "COMMITTED").is_file()


def test_kill_and_resume_matches_the_straight_run(straight, data, tmp_path):
    dump = tmp_path / "killed"
    proc = subprocess.Popen(torchrun_cmd(overrides(data, dump)), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    marker = dump / "checkpoints" / "step_000002" / "COMMITTED"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)                  # kill -9 the whole job right after the commit
    proc.wait()
    assert marker.exists(), "the run died before its step-2 checkpoint"
    assert not (dump / "rank0.json").exists()            # it really was cut off before the end
    run(overrides(data, dump) + ["--checkpoint.resume=auto"])
    a, b = rows(straight), rows(dump)
    assert sorted(b) == [1, 2, 3, 4]
    for step in (3, 4):
        keep = {k: v for k, v in a[step].items() if not k.startswith(NONDETERMINISTIC)}
        got = {k: v for k, v in b[step].items() if not k.startswith(NONDETERMINISTIC)}
        assert got == keep, step
    assert json.loads((dump / "rank0.json").read_text())["after"] == json.loads((straight / "rank0.json").read_text())["after"]
