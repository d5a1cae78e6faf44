"""benchmarks/visd_vs_grpo.py: the aggregation on hand-made rows, argument checks, the study's flow
(skips, a failed run, resume) with a fake trainer, and one real end-to-end study on a tiny dataset."""
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "visd_vs_grpo.py"
CONFIG = str(ROOT / "configs" / "tiny_synthetic.toml")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

_spec = importlib.util.spec_from_file_location("visd_vs_grpo", SCRIPT)
vg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vg)


# ---------------------------------------------------------------------------- aggregation
def _val(step, acc, reward):
    return {"step": step, "stage": "val" if step == 0 else "rl", "val/n": 2.0, "val/answer_accuracy": acc,
            "val/reward": reward}


def _train(step, reward, delta_abs, lam):
    return {"step": step, "stage": "rl", "reward/total": reward, "delta/abs_mean": delta_abs, "visd/lambda": lam}


def test_aggregate_mean_std_and_paired_difference():
    rows = {
        "grpo": {0: [_val(0, 10.0, 0.1), _train(1, 0.2, 0.0, 0.0), {**_train(2, 0.4, 0.0, 0.0), **_val(2, 20.0, 0.3)}],
                 1: [_val(0, 30.0, 0.2), _train(1, 0.0, 0.0, 0.0), {**_train(2, 0.2, 0.0, 0.0), **_val(2, 50.0, 0.6)}],
                 2: [_val(0, 0.0, 0.0), {**_train(2, 1.0, 0.0, 0.0), **_val(2, 0.0, 0.9)}]},
        # seed 2 of VISD failed: left out, so only seeds 0 and 1 pair up
        "visd": {0: [_val(0, 10.0, 0.1), _train(1, 0.3, 0.5, 0.5), {**_train(2, 0.5, 0.0, 0.0), **_val(2, 40.0, 0.5)}],
                 1: [_val(0, 30.0, 0.2), _train(1, 0.1, 0.3, 0.5), {**_train(2, 0.3, 0.0, 0.0), **_val(2, 60.0, 0.4)}]},
    }
    agg = vg.aggregate(rows, final_step=2)
    acc = agg["val"]["grpo"]["val/answer_accuracy"]
    assert acc[2]["per_seed"] == {0: 20.0, 1: 50.0, 2: 0.0}
    assert acc[2]["mean"] == pytest.approx(statistics.fmean([20.0, 50.0, 0.0]))
    assert acc[2]["std"] == pytest.approx(statistics.stdev([20.0, 50.0, 0.0]))      # sample std, n − 1
    assert acc[0]["n"] == 3 and sorted(acc) == [0, 2]
    assert "val/temporal_mIoU" not in agg["val"]["grpo"]                          # never measured: absent
    diff = agg["final_diff"]["val/answer_accuracy"]
    assert diff["per_seed"] == {0: 20.0, 1: 10.0} and diff["n"] == 2
    assert diff["mean"] == pytest.approx(15.0) and diff["std"] == pytest.approx(statistics.stdev([20.0, 10.0]))
    assert agg["final_diff"]["val/reward"]["per_seed"] == pytest.approx({0: 0.2, 1: -0.2})
    # training keys: a mean over RL steps per seed, then over seeds; Δ over the λ > 0 steps only
    tr = agg["train"]
    assert tr["grpo"]["reward/total"]["per_seed"] == pytest.approx({0: 0.3, 1: 0.1, 2: 1.0})
    assert tr["visd"]["delta/abs_mean"]["per_seed"] == pytest.approx({0: 0.5, 1: 0.3})
    assert tr["visd"]["delta/abs_mean"]["std"] == pytest.approx(statistics.stdev([0.5, 0.3]))
    assert tr["grpo"]["delta/abs_mean"]["mean"] == 0.0
    assert vg.mean_std([3.0]) == {"mean": 3.0, "std": None, "n": 1}


@pytest.mark.parametrize("argv, why", [
    (["--seeds", "0", "0"], "distinct"),
    (["--rl-steps", "0"], "--rl-steps"),
    (["--hindsight", "-1"], "--hindsight"),
    (["--", "--algorithm.name=grpo"], "set by the study"),
    (["--", "--rollout.no_such_key=1"], "unknown key"),
])
def test_bad_arguments_are_value_errors(tmp_path, argv, why):
    with pytest.raises(ValueError, match=why):
        vg.parse_args(["--config", CONFIG, "--out", str(tmp_path), *argv])


# ---------------------------------------------------------------------------- the flow, fake trainer
FAKE_TRAINER = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from visd_core.config import load_config, to_toml
cfg = load_config(sys.argv[3], sys.argv[4:])     # argv: --nproc_per_node=N --config C overrides
out = Path(cfg.job.dump_folder)
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(out.name + "\\n")
out.mkdir(parents=True, exist_ok=True)
(out / "config.toml").write_text(to_toml(cfg))
if cfg.training.stage == "sft":
    (out / "export").mkdir(exist_ok=True)
    (out / "export" / "config.json").write_text("{{}}")
    sys.exit(0)
if out.name == os.environ.get("FAKE_FAIL"):
    print("boom: the fake trainer fails here")
    sys.exit(3)
seed, visd = cfg.job.seed, cfg.algorithm.name == "visd"
R, E = cfg.training.rl_steps, cfg.eval.every
rows = [{{"step": 0, "stage": "val", "val/n": 2.0, "val/reward": 0.1 * seed}}]
for s in range(1, R + 1):
    r = {{"step": s, "stage": "rl", "reward/total": 0.1 * s + 0.05 * seed * visd,
         "visd/lambda": 0.5 * visd, "delta/abs_mean": 0.1 * visd * (seed + 1)}}
    if s % E == 0 or s == R:
        r.update({{"val/n": 2.0, "val/reward": 0.1 * seed + 0.01 * s + 0.02 * seed * visd,
                  "val/answer_accuracy": 10.0 * seed}})
    rows.append(r)
(out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
step = out / "checkpoints" / f"step_{{R:06d}}"
step.mkdir(parents=True, exist_ok=True)
(step / "COMMITTED").write_text("{{}}")
"""


def test_flow_with_a_fake_trainer(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAINER.format(root=str(ROOT)))
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.setenv("FAKE_FAIL", "visd_s2")
    monkeypatch.setattr(vg, "torchrun_cmd", lambda config, nproc, overrides: [
        sys.executable, str(fake), f"--nproc_per_node={nproc}", "--config", config, *overrides])
    out = tmp_path / "study"
    argv = ["--config", CONFIG, "--out", str(out), "--seeds", "0", "1", "2", "--sft-steps", "3", "--rl-steps", "4",
            "--eval-every", "2", "--eval-samples", "2", "--hindsight", "0"]
    assert vg.main(argv) == 1                       # a failed run: reported, the rest still tabulated
    printed = capsys.readouterr().out
    assert "visd_s2: FAILED (exit code 3)" in printed and "boom: the fake trainer fails here" in printed
    t = json.loads((out / "table.json").read_text())
    assert t["runs"]["visd_s2"]["status"] == "failed" and t["runs"]["grpo_s2"]["status"] == "ok"
    assert "visd_s2 (exit code 3)" in (out / "table.md").read_text()
    assert (out / "curves.png").stat().st_size > 0
    reward = t["val"]["visd"]["val/reward"]
    assert sorted(reward) == ["0", "2", "4"] and sorted(reward["4"]["per_seed"]) == ["0", "1"]
    diff = t["final_diff"]["val/reward"]
    assert diff["n"] == 2 and diff["per_seed"] == pytest.approx({"0": 0.0, "1": 0.02})
    assert diff["std"] == pytest.approx(statistics.stdev([0.0, 0.02]))
    assert t["settings"]["rl_steps"] == 4 and '[algorithm]\nname = "visd"' in t["config"]

    # Rerun: SFT reused, complete runs skipped, only the failed one launched again (now passing).
    calls.write_text("")
    monkeypatch.setenv("FAKE_FAIL", "")
    assert vg.main(argv) == 0
    assert calls.read_text().split() == ["visd_s2"]
    t = json.loads((out / "table.json").read_text())
    assert t["sft"]["status"] == "reused" and t["runs"]["visd_s2"]["status"] == "ok"
    assert t["runs"]["grpo_s0"]["status"] == "skipped" and t["final_diff"]["val/reward"]["n"] == 3
    assert t["runs"]["grpo_s0"]["wall_s"] > 0 and t["sft"]["wall_s"] > 0     # the first invocation's times

    # A changed setting or world size makes the finished runs stale: they run again.
    calls.write_text("")
    assert vg.main([*argv[:-6], "--eval-every", "4", *argv[-4:]]) == 0
    assert len(calls.read_text().split()) == 6
    calls.write_text("")
    assert vg.main([*argv[:-6], "--eval-every", "4", *argv[-4:], "--nproc", "1"]) == 0
    assert len(calls.read_text().split()) == 6


# ---------------------------------------------------------------------------- real end to end
@pytest.mark.slow
def test_end_to_end_tiny_study(tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "visd_core.data.synthetic", "--out", str(data), "--n", "12", "--seed", "0",
                    "--n-val", "4"], cwd=ROOT, env=ENV, check=True, capture_output=True)
    out = tmp_path / "study"
    # 30 SFT steps: a 4-step model samples near-uniformly over its ~500 rows and then, now and then, an
    # <|image_pad|> / <|video_pad|> token that the replay forward rejects (see the study's report).
    argv = [sys.executable, str(SCRIPT), "--config", CONFIG, "--out", str(out), "--seeds", "0", "1",
            "--sft-steps", "30", "--rl-steps", "2", "--eval-every", "1", "--nproc", "2", "--eval-samples", "2",
            "--hindsight", "2", "--",
            f"--data.train_path={data / 'train.jsonl'}", f"--data.val_path={data / 'val.jsonl'}",
            "--data.num_frames=4", "--rollout.max_new_tokens=12", "--model.vocab_subset=data",
            "--visd.lambda_steps=10"]
    r = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert all((out / f).stat().st_size > 0 for f in ("table.md", "table.json", "curves.png"))
    t = json.loads((out / "table.json").read_text())
    names = [f"{a}_s{s}" for a in ("grpo", "visd") for s in (0, 1)]
    assert all(t["runs"][n]["status"] == "ok" for n in names)

    metrics = {n: [json.loads(x) for x in (out / n / "metrics.jsonl").read_text().splitlines()] for n in names}
    for algo in ("grpo", "visd"):
        for key, _ in vg.VAL_METRICS:
            if key not in t["val"][algo]:          # e.g. spatial mIoU: no `where` question among 2 records
                assert not any(key in row for n in names for row in metrics[n])
                continue
            cells = t["val"][algo][key]
            assert sorted(cells) == ["0", "1", "2"]
            for step, cell in cells.items():       # recomputed from the runs' own metrics files
                vals = [next(row[key] for row in metrics[f"{algo}_s{s}"] if row["step"] == int(step)) for s in (0, 1)]
                assert cell["per_seed"] == {"0": vals[0], "1": vals[1]}
                assert cell["mean"] == pytest.approx(statistics.fmean(vals))
                assert cell["std"] == pytest.approx(statistics.stdev(vals))
    for key in t["final_diff"]:
        for s in ("0", "1"):
            assert t["final_diff"][key]["per_seed"][s] == pytest.approx(
                t["val"]["visd"][key]["2"]["per_seed"][s] - t["val"]["grpo"][key]["2"]["per_seed"][s])
    for s in ("0", "1"):     # step 0 is the same SFT model's greedy validation in both runs of a seed
        for key in t["val"]["grpo"]:
            assert t["val"]["grpo"][key]["0"]["per_seed"][s] == t["val"]["visd"][key]["0"]["per_seed"][s]
    # VISD's Δ diagnostics come from its λ > 0 steps (here: both), recomputed per seed
    delta = [statistics.fmean(row["delta/abs_mean"] for row in metrics[f"visd_s{s}"] if row.get("stage") == "rl")
             for s in (0, 1)]
    assert t["train"]["visd"]["delta/abs_mean"]["mean"] == pytest.approx(statistics.fmean(delta))
    assert t["train"]["visd"]["delta/abs_mean"]["std"] == pytest.approx(statistics.stdev(delta))
    hs = t["hindsight"]
    assert "error" not in hs, hs
    assert hs["records"] + sum(hs["skipped"].values()) == 2
    if hs["records"]:
        assert 0.0 <= hs["feedback"]["topk_overlap"] <= 1.0 and hs["no_feedback"]["tokens"] == hs["feedback"]["tokens"]
    assert "## Hindsight diagnostic" in (out / "table.md").read_text()

    t0 = time.perf_counter()          # a rerun skips every finished run
    r = subprocess.run(argv[:argv.index("--hindsight")] + ["--hindsight", "0"] + argv[argv.index("--"):], cwd=ROOT,
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert time.perf_counter() - t0 < 30
    assert r.stdout.count("complete, skipped") == 4 and "sft: reusing" in r.stdout
