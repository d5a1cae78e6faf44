"""The run report: one self-contained report.html per run (or several runs overlaid).

    python -m visd_core.report runs/tiny_synthetic [runs/grpo ...] [--out PATH] [--credit-steps 3]

It reads what the run folders hold — config.toml, metrics.jsonl (a partial last line of a run
still writing is skipped), credit/step_*.jsonl — and writes curves of every metric group and the
token-credit view; metrics a run lacks (an older run, a GRPO run) are simply not drawn.
`make train` writes runs/<name>/report.html at the end (Trainer._report).
"""
from __future__ import annotations

from pathlib import Path


def write_report(run_dirs: list[str | Path], out: str | Path | None = None, credit_steps: int = 3) -> Path:
    """Write the report of `run_dirs` to `out` (default: <first run dir>/report.html); return its path."""
    from visd_core.report.html import render_page     # matplotlib loads here, not when the trainer imports us
    from visd_core.report.runs import read_runs

    if not run_dirs:
        raise ValueError("write_report needs at least one run folder")
    out = Path(out) if out is not None else Path(run_dirs[0]) / "report.html"
    page = render_page(read_runs([Path(d) for d in run_dirs]), credit_steps)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)                                   # a browser reloading it never sees half a page
    return out
