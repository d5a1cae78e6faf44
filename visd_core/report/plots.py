"""The report's charts: matplotlib figures rendered to inline SVG strings (no files, no network).

One chart per metric group; several runs overlay, one colour each, with a legend. Noisy series
(more than 20 points) are drawn faint with a moving average on top, as reward_curve.png is.
"""
from __future__ import annotations

import io

from visd_core.report.runs import Run

SMOOTH_ABOVE = 20           # points; below this the raw line is readable as it is
LINESTYLES = ("-", "--", ":", "-.")
# The parts of an RL step's time (VISD: judge, teacher; GSPO / VisionCoach: reference, rerollout, sd)
TIME_PARTS = ("time/rollout", "time/reward", "time/judge", "time/teacher", "time/rerollout", "time/reference",
              "time/sd", "time/update")
EXACT = ("visd/lambda", "optim/lr", "mem/peak_mb")   # schedules and maxima: a moving average would only lag


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.fonttype": "none",        # text stays text: a fifth of the size of glyph paths
                         "font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]                    # drop the XML prolog and DOCTYPE: inline in HTML


def moving_average(vals: list[float], w: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(vals):
        acc += v - (vals[i - w] if i >= w else 0.0)
        out.append(acc / min(i + 1, w))
    return out


def chart_svg(runs: list[Run], title: str, keys: list[str], ylabel: str = "") -> str | None:
    """Lines of `keys` over the step, every run overlaid; None when no run has any of them."""
    lines = [(ri, ki, *run.series(k)) for ri, run in enumerate(runs) for ki, k in enumerate(keys)]
    lines = [ln for ln in lines if ln[2]]
    if not lines:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(4.4, 2.7))
    several = len(runs) > 1
    for ri, ki, steps, vals in lines:
        # one run: a colour per metric; several: a colour per run, a line style per metric
        color = colors[(ri if several else ki) % len(colors)]
        style = LINESTYLES[ki % len(LINESTYLES)] if several else "-"
        label = " · ".join(x for x in (runs[ri].label if several else "", keys[ki] if len(keys) > 1 else "") if x)
        if len(vals) > SMOOTH_ABOVE and keys[ki] not in EXACT:
            ax.plot(steps, vals, color=color, linestyle=style, alpha=0.25, linewidth=0.8)
            vals = moving_average(vals, max(2, len(vals) // 10))
        ax.plot(steps, vals, color=color, linestyle=style, linewidth=1.4, label=label or None,
                marker="o" if len(vals) == 1 else None, markersize=3)
    lo, hi = min(min(ln[2]) for ln in lines), max(max(ln[2]) for ln in lines)
    for ri in sorted({ln[0] for ln in lines}):
        first_rl = next((r["step"] for r in runs[ri].rows if r.get("stage") == "rl"), None)
        if first_rl is not None and lo < first_rl <= hi:    # SFT -> RL hand-over inside this chart
            ax.axvline(first_rl - 0.5, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # steps are whole numbers
    ax.ticklabel_format(axis="y", useOffset=False)            # ρ_t ≈ 1: print 1.0000, not 1e-8 + 1
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.25)
    if any(ax.get_legend_handles_labels()[1]):
        ax.legend(frameon=False)
    fig.tight_layout()
    return _svg(fig)


def time_split_svg(runs: list[Run]) -> str | None:
    """Mean seconds per step, split into TIME_PARTS, per run and stage."""
    bars = []
    for run in runs:
        for stage in ("sft", "rl"):
            rows = [r for r in run.rows if r.get("stage") == stage]
            if not rows:
                continue
            parts = {k: sum(float(r.get(k, 0.0)) for r in rows) / len(rows) for k in TIME_PARTS}
            total = sum(float(r.get("time/step", 0.0)) for r in rows) / len(rows)
            if stage == "sft" or not any(parts.values()):
                parts = {"time/step": total}        # SFT steps are one forward-backward: no split
            bars.append((f"{run.label} · {stage.upper()}", parts))
    if not bars:
        return None
    plt = _pyplot()
    colors = {"time/step": "0.6", **dict(zip(TIME_PARTS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))}
    fig, ax = plt.subplots(figsize=(8.8, 0.6 + 0.42 * len(bars)))
    seen = set()
    for y, (name, parts) in enumerate(bars):
        left = 0.0
        for k, v in parts.items():
            if v <= 0:
                continue
            ax.barh(y, v, left=left, color=colors[k], label=None if k in seen else k.removeprefix("time/"))
            seen.add(k)
            left += v
        ax.text(left, y, f" {left:.2f} s", va="center", fontsize=7)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars])
    ax.invert_yaxis()
    ax.set_xlabel("mean seconds per step")
    ax.set_title("Where a step's time goes", loc="left")
    ax.legend(frameon=False, ncol=6, loc="lower right", bbox_to_anchor=(1, 1.0), fontsize=7)
    fig.tight_layout()
    return _svg(fig)
