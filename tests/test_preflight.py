"""A new user's first mistakes end in one line that says what to do, exit 2, from rank 0 only —
not a FileNotFoundError traceback on every rank."""
import os
import subprocess
import sys

from visd_core.config import load_config
from visd_core.preflight import missing_inputs

from tests.trainer.launch import ROOT

TINY = str(ROOT / "configs" / "tiny_synthetic.toml")


def test_each_missing_input_gets_its_own_line(tmp_path):
    (tmp_path / "model").mkdir()
    cfg = load_config(TINY, [f"--data.train_path={tmp_path / 'nope.jsonl'}", f"--data.video_root={tmp_path / 'vids'}",
                             f"--model.path={tmp_path / 'model'}", f"--model.tokenizer={tmp_path / 'tok.tiktoken'}",
                             f"--data.val_path={tmp_path / 'val.jsonl'}", "--eval.every=5"])
    lines = missing_inputs(cfg)
    assert len(lines) == 5
    assert lines[0].startswith("data.train_path") and "python -m visd_core.data.synthetic" in lines[0]
    assert lines[1].startswith("data.val_path") and "--eval.every=0" in lines[1]
    assert lines[2].startswith("data.video_root") and "no such directory" in lines[2]
    assert lines[3].startswith("model.path") and "no config.json" in lines[3]
    assert lines[4].startswith("model.tokenizer")
    assert len(missing_inputs(load_config(TINY, [f"--data.train_path={tmp_path / 'nope.jsonl'}", "--eval.every=0",
                                                 f"--data.val_path={tmp_path / 'val.jsonl'}"]))) == 1
    (tmp_path / "nope.jsonl").write_text("")
    (tmp_path / "val.jsonl").write_text("")
    (tmp_path / "vids").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "tok.tiktoken").write_text("")
    assert missing_inputs(cfg) == []
    assert "model.path" in missing_inputs(load_config(TINY, [f"--data.train_path={tmp_path / 'nope.jsonl'}",
                                                             f"--model.path={tmp_path / 'none'}", "--eval.every=0"]))[0]


def test_train_py_missing_data_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "train.py", "--config", TINY, f"--data.train_path={tmp_path / 'x.jsonl'}",
                        "--eval.every=0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"train.py: data.train_path {tmp_path / 'x.jsonl'}: no such file; generate the synthetic set with "
        "`python -m visd_core.data.synthetic --out data/synthetic --n 1000 --seed 0` (`make train` does it), "
        "or point --data.train_path at your JSONL"]


def test_under_torchrun_only_rank_zero_says_it(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "train.py", "--config", TINY, f"--data.train_path={tmp_path / 'x.jsonl'}",
                        f"--model.path={tmp_path / 'ckpt'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert out.count("train.py: data.train_path") == 1 and out.count("train.py: model.path") == 1
    # torchrun's launcher reports the failed children its own way; nothing of ours raised
    assert "FileNotFoundError" not in out and 'train.py", line' not in out and "visd_core/" not in out
    assert "exitcode  : 2" in out
