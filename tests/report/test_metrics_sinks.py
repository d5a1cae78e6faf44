"""One metrics interface, several sinks: TensorBoard event files read back with TensorBoard's own
reader equal metrics.jsonl — after a resume too; wandb gets the same rows; a sink whose package is
missing stops the run at start with one line that says how to get it."""
import importlib.machinery
import math
import sys
import time
import types

import pytest

from visd_core.config import Metrics
from visd_core.metrics import MetricsWriter, read_rows

STEPS = {1: ("sft", {"sft/loss": 2.5, "optim/lr": 3e-3, "time/step": 1.25}),
         2: ("sft", {"sft/loss": 2.25, "optim/lr": 3e-3, "time/step": 1.5}),
         3: ("rl", {"reward/total": 0.125, "visd/lambda": 0.5, "optim/grad_norm": float("nan"), "n/ok": 3}),
         4: ("rl", {"reward/total": 0.375, "visd/lambda": 0.25, "optim/grad_norm": 0.75, "n/ok": 4})}


def tb_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def jsonl_scalars(path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list] = {}
    for row in read_rows(path):
        for k, v in row.items():
            if k not in ("step", "stage"):
                out.setdefault(k, []).append((row["step"], float(v)))    # "nan" in the file: NaN in TensorBoard
    return out


def assert_same(tb, js):
    assert sorted(tb) == sorted(js)
    for tag, pts in js.items():
        got = tb[tag]
        assert [s for s, _ in got] == [s for s, _ in pts], tag
        for (_, a), (_, b) in zip(got, pts):       # TensorBoard stores float32
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6), (tag, a, b)


def write(w, steps, scale=1.0):
    for s in steps:
        stage, vals = STEPS[s]
        w.write(s, stage, {k: v * scale for k, v in vals.items()})


def test_tensorboard_event_files_equal_metrics_jsonl_also_after_resume(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e '.[tb]')")
    opts = Metrics(tensorboard=True)
    w = MetricsWriter(tmp_path, enabled=True, opts=opts)
    write(w, [1, 2, 3, 4])
    w.close()
    assert_same(tb_scalars(tmp_path / "tb"), jsonl_scalars(tmp_path / "metrics.jsonl"))

    time.sleep(1.1)             # event file names carry whole seconds: the resumed one must sort after
    w = MetricsWriter(tmp_path, enabled=True, resume=True, opts=opts)
    w.truncate_after(2)          # resumed from the step-2 checkpoint; steps 3-4 run again, differently
    write(w, [3, 4], scale=2.0)
    w.close()
    js = jsonl_scalars(tmp_path / "metrics.jsonl")
    assert js["reward/total"] == [(3, 0.25), (4, 0.75)]
    assert_same(tb_scalars(tmp_path / "tb"), js)     # purge_step hid the first run's steps 3-4

    w = MetricsWriter(tmp_path, enabled=True, opts=opts)   # a fresh run in the same folder starts over
    write(w, [1])
    w.close()
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    assert_same(tb_scalars(tmp_path / "tb"), jsonl_scalars(tmp_path / "metrics.jsonl"))


def test_a_rank_that_does_not_write_opens_no_sink(tmp_path):
    w = MetricsWriter(tmp_path, enabled=False, opts=Metrics(tensorboard=False))
    write(w, [1])
    assert not (tmp_path / "tb").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_missing_package_is_one_line_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ValueError) as e:
        MetricsWriter(tmp_path, enabled=False, opts=Metrics(tensorboard=True, wandb=True))   # every rank checks
    msg = str(e.value)
    assert "\n" not in msg and "metrics.tensorboard = true needs the tensorboard package" in msg
    assert "pip install -e '.[tb]'" in msg and "metrics.wandb = true needs the wandb package" in msg


def test_wandb_gets_the_same_rows_offline(tmp_path, monkeypatch):
    calls = []
    run = types.SimpleNamespace(log=lambda values, step: calls.append((step, values)),
                                finish=lambda: calls.append("finish"))

    def init(**kw):
        calls.append(kw)
        return run

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = init
    monkeypatch.setitem(sys.modules, "wandb", fake)
    w = MetricsWriter(tmp_path / "myrun", enabled=True, opts=Metrics(wandb=True))
    write(w, [1, 4])
    w.close()
    assert calls[0] == {"mode": "offline", "dir": str(tmp_path / "myrun"), "project": "visd", "name": "myrun"}
    assert calls[1] == (1, STEPS[1][1]) and calls[2][0] == 4 and calls[2][1]["n/ok"] == 4.0
    assert calls[-1] == "finish"
