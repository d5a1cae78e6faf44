"""The report of a real run: train.py under torchrun (2 processes, 1 SFT + 2 RL steps, token credit
every RL step, TensorBoard on when it is installed), then what `make train` ends with — the report
path — and what the report, the credit files, the event files and a real browser show of it."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.page import CHROMIUM, NO_CHROMIUM, body_attrs, check_shading, credit_cards, render
from tests.report.test_metrics_sinks import assert_same, jsonl_scalars, tb_scalars
from visd_core.data.synthetic import generate
from visd_core.report.runs import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
HAS_TB = importlib.util.find_spec("tensorboard") is not None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("synthetic")
    generate(str(data), n=12, seed=3, n_val=6, workers=1, progress=False)
    dump = tmp_path_factory.mktemp("run")
    args = [f"--data.train_path={data / 'train.jsonl'}", f"--data.val_path={data / 'val.jsonl'}",
            f"--job.dump_folder={dump}", "--data.num_frames=4",
            "--rollout.max_new_tokens=12", "--training.sft_steps=1", "--training.rl_steps=2",
            "--report.credit_every=1", "--checkpoint.export=false", f"--metrics.tensorboard={str(HAS_TB).lower()}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
           "--config", "configs/tiny_synthetic.toml", *args]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=420,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert f"run report: {dump / 'report.html'}" in r.stdout    # make train's last word
    return dump


def credit(run_dir) -> list[dict]:
    return [r for f in sorted((run_dir / "credit").glob("step_*.jsonl")) for r in read_jsonl(f)]


def test_credit_files_of_every_rl_step(run_dir):
    files = sorted(p.name for p in (run_dir / "credit").iterdir())
    assert files == ["step_000002.jsonl", "step_000003.jsonl"]    # global steps of RL steps 1 and 2
    for f in files:
        recs = read_jsonl(run_dir / "credit" / f)
        assert len(recs) == 4                                         # [report] credit_rollouts, of 2 x 8
        adv = [r["advantage"] for r in recs]
        if any(a > 0 for a in adv) and any(a < 0 for a in adv):      # both signs on show, best first
            assert adv[0] > 0 > adv[1]
        for r in recs:
            assert r["rank"] in (0, 1)                                   # gathered from every rank
            n = len(r["tokens"])
            assert n > 0 and all(len(r[k]) == n for k in ("delta", "m", "adv_scale", "ratio", "entropy", "in_loss"))
            assert r["lambda"] > 0 and r["feedback"]                  # VISD with the rule judge: feedback
            assert all(0.8 - 1e-6 <= m <= 1.2 + 1e-6 for m in r["m"])  # visd eq. 6 clip
            assert r["question"] and r["answer"] and "reward" in r and set(r["components"]) >= {"ans", "fmt"}


def test_report_has_the_curves_and_the_credit_view(run_dir):
    html = (run_dir / "report.html").read_text()
    for title in ("Total reward", "λ (visd/lambda)", "Δ_t teacher−student log-ratio", "m_t token weight",
                  "Clip fractions", "Entropy", "Grad norm", "Tokens / s", "Step time split", "Peak memory",
                  "SFT loss", "Where a step"):
        assert title in html, title
    assert "[report]" in html and "credit_every = 1" in html         # the config that ran
    assert sorted({c["step"] for c in credit_cards(html)}) == [2, 3]
    assert check_shading(html, credit(run_dir)) == sum(len(r["tokens"]) for r in credit(run_dir))


@pytest.mark.skipif(not HAS_TB, reason="tensorboard is not installed (pip install -e '.[tb]')")
def test_tensorboard_events_equal_metrics_jsonl(run_dir):
    js = jsonl_scalars(run_dir / "metrics.jsonl")
    assert "reward/total" in js and "sft/loss" in js
    assert_same(tb_scalars(run_dir / "tb"), js)


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_a_real_browser_renders_it(run_dir, tmp_path):
    dom, png = render(run_dir / "report.html", tmp_path)
    body = body_attrs(dom)
    html = (run_dir / "report.html").read_text()
    assert body["data-ok"] == "1", body                              # every chart drew, nothing fetched
    assert int(body["data-plots"]) == html.count('<figure class="plot') >= 12
    assert int(body["data-fetched"]) == 0 and int(body["data-bad-images"]) == 0
    assert int(body["data-tokens"]) == sum(len(r["tokens"]) for r in credit(run_dir))
    assert re.search(r'<article class="rollout"', dom)
    import matplotlib.image
    pixels = matplotlib.image.imread(str(png))
    assert pixels.shape[:2] == (2000, 1280) and pixels.std() > 0.05  # drawn, not a blank page
    json.dumps(body)
