"""Per-step metrics: one JSON object per step in <dump_folder>/metrics.jsonl, and the reward curve.

Names are `group/name` (`reward/total`, `time/rollout`, `visd/m_clip_frac`, ...). Only rank 0
writes; values are already reduced across ranks by the caller.
"""
from __future__ import annotations

import json
import math
import resource
from pathlib import Path

import torch


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA allocator peak on GPU, max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux reports KiB


def stats(prefix: str, x: torch.Tensor) -> dict[str, float]:
    """mean / min / max of a tensor's finite entries as `prefix/mean` ... (empty tensor: nothing)."""
    x = x.detach().float().flatten()
    x = x[torch.isfinite(x)]
    if x.numel() == 0:
        return {}
    return {f"{prefix}/mean": x.mean().item(), f"{prefix}/min": x.min().item(), f"{prefix}/max": x.max().item()}


class MetricsWriter:
    def __init__(self, folder: Path, enabled: bool, resume: bool = False):
        self.path = Path(folder) / "metrics.jsonl"
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not resume:
                self.path.write_text("")

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines of steps after the checkpoint, so the file holds each step once."""
        if not (self.enabled and self.path.exists()):
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, step: int, stage: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "stage": stage}
        row.update({k: (v if math.isfinite(v) else str(v)) if isinstance(v, float) else v
                    for k, v in sorted(values.items())})
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


def plot_rewards(rows: list[dict], out: Path) -> Path | None:
    """reward/total per RL step (and a moving average) as a PNG; None when there is nothing to plot."""
    pts = [(r["step"], r["reward/total"]) for r in rows if r.get("stage") == "rl" and "reward/total" in r]
    if not pts:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, vals = zip(*pts)
    w = max(1, len(vals) // 10)
    avg = [sum(vals[max(0, i - w + 1):i + 1]) / len(vals[max(0, i - w + 1):i + 1]) for i in range(len(vals))]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, vals, alpha=0.35, label="reward/total (mean over the step's rollouts)")
    ax.plot(steps, avg, label=f"moving average ({w} steps)")
    ax.set_xlabel("step")
    ax.set_ylabel("total reward")
    ax.set_title("RL reward")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
