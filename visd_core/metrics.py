"""Per-step metrics: one JSON object per step in <dump_folder>/metrics.jsonl, and the reward curve.

Names are `group/name` (`reward/total`, `time/rollout`, `delta/abs_mean`, ...). Only rank 0
writes; values are already reduced across ranks by the caller. `MetricsWriter` is the one place a
step's scalars go: metrics.jsonl always, then the optional sinks of `[metrics]` — TensorBoard
event files in <dump_folder>/tb/ and an offline wandb run in <dump_folder>/wandb/ — with the same
names, steps and values.
"""
from __future__ import annotations

import importlib.util
import json
import math
import resource
from pathlib import Path

import torch

from visd_core.config import Metrics


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


def missing_sinks(opts: Metrics) -> list[str]:
    """One line per sink `[metrics]` asks for whose package does not import (empty: all there)."""
    out = []
    if opts.tensorboard and importlib.util.find_spec("tensorboard") is None:
        out.append("metrics.tensorboard = true needs the tensorboard package: pip install -e '.[tb]' "
                   "(or pip install tensorboard), or set --metrics.tensorboard=false")
    if opts.wandb and importlib.util.find_spec("wandb") is None:
        out.append("metrics.wandb = true needs the wandb package: pip install wandb, or set --metrics.wandb=false")
    return out


def scalars(values: dict) -> dict[str, float]:
    """The numeric entries of a metrics row (bools and strings such as `stage` are not scalars)."""
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardSink:
    """<folder>/tb/ event files. Opened at the first step written: on resume that step is the
    checkpoint's + 1, and purge_step hides the old run's events from there on (TensorBoard's own
    restart rule), as truncate_after does for metrics.jsonl."""

    def __init__(self, folder: Path, first_step: int):
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(str(folder), purge_step=first_step)

    def write(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.tb.add_scalar(k, v, step)
        self.tb.flush()            # one small write per step; a killed run keeps every step it logged

    def close(self) -> None:
        self.tb.close()


class WandbSink:
    """An offline wandb run in <folder>/wandb/ (`wandb sync` uploads it later); nothing is sent."""

    def __init__(self, folder: Path, name: str):
        import wandb
        self.run = wandb.init(mode="offline", dir=str(folder), project="visd", name=name)

    def write(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class MetricsWriter:
    def __init__(self, folder: Path, enabled: bool, resume: bool = False, opts: Metrics | None = None):
        self.folder = Path(folder)
        self.path = self.folder / "metrics.jsonl"
        self.enabled = enabled
        self.opts = opts or Metrics()
        missing = missing_sinks(self.opts)      # checked on every rank, so all of them stop together
        if missing:
            raise ValueError("; ".join(missing))
        self.sinks: list | None = None          # opened at the first write (see TensorBoardSink)
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not resume:
                self.path.write_text("")
                # a fresh run replaces the old one's event files too, as it replaces metrics.jsonl
                for old in (self.folder / "tb").glob("events.out.tfevents.*"):
                    old.unlink()

    def _open_sinks(self, first_step: int) -> list:
        sinks = []
        if self.opts.tensorboard:
            sinks.append(TensorBoardSink(self.folder / "tb", first_step))
        if self.opts.wandb:
            sinks.append(WandbSink(self.folder, self.folder.name))
        return sinks

    def close(self) -> None:
        for sink in self.sinks or []:
            sink.close()
        self.sinks = None

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines of steps after the checkpoint, so the file holds each step once."""
        if not (self.enabled and self.path.exists()):
            return
        keep = [json.dumps(r) for r in self.read() if r["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, step: int, stage: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "stage": stage}
        row.update({k: (v if math.isfinite(v) else str(v)) if isinstance(v, float) else v
                    for k, v in sorted(values.items())})
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.sinks is None:
            self.sinks = self._open_sinks(step)
        for sink in self.sinks:
            sink.write(step, scalars(values))

    def read(self) -> list[dict]:
        """The rows written so far; a line cut short by a kill mid-write is left out."""
        return read_rows(self.path)


def read_rows(path: Path) -> list[dict]:
    """metrics.jsonl rows; tolerates a missing file and a partial last line (a run still writing)."""
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
    return rows


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
