"""Run a worker script under `torchrun --standalone --nproc_per_node=2` (gloo) and check both ranks passed."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def torchrun(script: str, *args: str, timeout: int = 300) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).parent / script), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{script} {' '.join(args)} failed:\n{out[-6000:]}"
    assert "RANK 0 OK" in r.stdout and "RANK 1 OK" in r.stdout, out[-3000:]
    return out
