"""Helpers of the trainer's torchrun tests: launch `_run_trainer.py` on a tiny synthetic dataset and
read back what the run wrote (metrics.jsonl, per-rank parameter checksums, ids of records read)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).parent / "_run_trainer.py"
CONFIG = ROOT / "configs" / "tiny_synthetic.toml"
# Timing, memory and judge latency differ between runs; everything else must be identical.
NONDETERMINISTIC = ("time/", "perf/", "mem/", "judge/latency", "judge/time_s")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VISD_INJECT_NONFINITE": "2:1"}


def overrides(data: Path, dump: Path) -> list[str]:
    """2 SFT + 2 RL steps of the tiny default, a checkpoint every 2 steps."""
    return [f"--data.train_path={data / 'train.jsonl'}", f"--job.dump_folder={dump}", "--eval.every=0",
            "--data.num_frames=4", "--rollout.max_new_tokens=12", "--training.sft_steps=2", "--training.rl_steps=2",
            "--training.sft_teacher_view_frac=0.5", "--visd.lambda_steps=10", "--checkpoint.every=2",
            "--checkpoint.export=false"]


def torchrun_cmd(args: list[str], nproc: int = 2, launcher: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *(launcher or ["--standalone"]),
            f"--nproc_per_node={nproc}", str(WORKER), str(CONFIG), *args]


def run(args: list[str], nproc: int = 2, launcher: list[str] | None = None, env: dict | None = None) -> str:
    r = subprocess.run(torchrun_cmd(args, nproc, launcher), cwd=ROOT, env=env or ENV, capture_output=True, text=True,
                       timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    return out


def kill_after_commit(args: list[str], dump: Path, step: int) -> None:
    """Launch, SIGKILL the whole job right after its step-`step` checkpoint is committed, and check
    that it really was cut off before the end."""
    proc = subprocess.Popen(torchrun_cmd(args), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    marker = dump / "checkpoints" / f"step_{step:06d}" / "COMMITTED"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), f"the run died before its step-{step} checkpoint"
    assert not (dump / "rank0.json").exists()            # it really was cut off before the end


def rows(dump: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (dump / "metrics.jsonl").read_text().splitlines())}


def deterministic(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(NONDETERMINISTIC)}


def final_params(dump: Path, rank: int = 0) -> str:
    return json.loads((dump / f"rank{rank}.json").read_text())["after"]


def seen_ids(dump: Path) -> list[str]:
    """Ids of the records every rank read, over every launch into `dump` (VISD_TEST_SEEN_IDS=1)."""
    return [i for p in sorted(dump.glob("seen_rank*.txt")) for i in p.read_text().split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
