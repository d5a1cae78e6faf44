"""What a run folder holds, read tolerantly: a run still being written, an older run without some
metrics, a GRPO run with no Δ — each reads as whatever is there."""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from visd_core.metrics import read_rows


@dataclass
class Run:
    path: Path
    label: str                                   # legend name: folder name, plus the algorithm
    config_text: str = ""                        # config.toml as written ("" when absent)
    config: dict = field(default_factory=dict)   # parsed config ({} when absent or unreadable)
    rows: list[dict] = field(default_factory=list)        # metrics.jsonl, one row per step, by step
    credit: dict[int, list[dict]] = field(default_factory=dict)   # step -> token-credit records

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of the rows holding a finite number under `key`."""
        pts = [(r["step"], float(r[key])) for r in self.rows
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
               and math.isfinite(r[key])]
        return [s for s, _ in pts], [v for _, v in pts]

    def keys(self) -> set[str]:
        return {k for r in self.rows for k, v in r.items()
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}

    def planned_steps(self) -> int | None:
        t = self.config.get("training", {})
        sft, rl = t.get("sft_steps"), t.get("rl_steps")
        if not isinstance(sft, int) or not isinstance(rl, int):
            return None
        stage = t.get("stage", "sft_then_rl")
        return (sft if stage in ("sft", "sft_then_rl") else 0) + (rl if stage in ("rl", "sft_then_rl") else 0)


def read_jsonl(path: Path) -> list[dict]:
    """Objects of a JSONL file; lines that do not parse (a partial last line) are left out."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def read_run(path: Path) -> Run:
    path = Path(path)
    run = Run(path=path, label=path.resolve().name)
    cfg_file = path / "config.toml"
    if cfg_file.is_file():
        run.config_text = cfg_file.read_text(encoding="utf-8", errors="replace")
        try:
            run.config = tomllib.loads(run.config_text)
        except tomllib.TOMLDecodeError:
            run.config = {}
    algo = run.config.get("algorithm", {}).get("name")
    if algo:
        run.label += f" ({algo})"
    by_step = {r["step"]: r for r in read_rows(path / "metrics.jsonl")}   # a resumed step: its last row
    run.rows = [by_step[s] for s in sorted(by_step)]
    for f in sorted((path / "credit").glob("step_*.jsonl")):
        try:
            step = int(f.stem.split("_", 1)[1])
        except ValueError:
            continue
        records = [r for r in read_jsonl(f) if isinstance(r.get("tokens"), list)]
        if records:
            run.credit[step] = records
    return run


def read_runs(paths: list[Path]) -> list[Run]:
    runs = [read_run(p) for p in paths]
    seen: dict[str, int] = {}
    for r in runs:                               # two runs with one name: tell them apart by parent folder
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.path.resolve().parent.name}/{r.label}"
    return runs
