"""The report page: one self-contained HTML file (inline CSS, SVG charts, one inline script; nothing
fetched). Every piece of run text goes through html.escape."""
from __future__ import annotations

import datetime
from html import escape

from visd_core.report.credit_view import CREDIT_CSS, credit_section
from visd_core.report.plots import chart_svg, time_split_svg
from visd_core.report.runs import Run

COMPONENT_NAMES = {"ans": "answer", "fmt": "format", "ans_tmp": "answer temporal IoU",
                   "ans_spa": "answer spatial IoU", "thk_tmp": "thinking temporal (eq. 11-12)",
                   "thk_spa": "thinking spatial (eq. 13)"}

# (section, [(chart title, metric keys)]); a chart no run has data for is left out.
FIXED_CHARTS = [
    ("Reward", [("Total reward", ["reward/total"]),
                ("Answer", ["answer/acc", "answer/has_answer"])]),
    ("VISD token credit", [("λ (visd/lambda)", ["visd/lambda"]),
                           ("Δ_t teacher−student log-ratio (eq. 4)", ["delta/mean", "delta/abs_mean", "delta/std"]),
                           ("m_t token weight (eq. 6)", ["token_weight/mean"]),
                           ("Clip fractions", ["token_weight/clip_low_frac", "token_weight/clip_high_frac",
                                               "ratio/clip_frac"]),
                           ("ρ_t importance ratio", ["ratio/mean"]),
                           ("Advantages", ["adv/abs_mean", "advantages_hat/abs_mean", "adv/zero_frac"])]),
    ("Optimization", [("Policy loss", ["loss/policy"]), ("SFT loss", ["sft/loss"]),
                      ("Entropy", ["entropy/mean"]), ("Grad norm", ["optim/grad_norm"]),
                      ("Learning rate", ["optim/lr"]), ("Rollout length (tokens)", ["rollout/mean_length"]),
                      ("Rollouts cut at max_new_tokens", ["rollout/truncated_frac"])]),
    ("Cost", [("Tokens / s", ["perf/tokens_per_s"]),
              ("Step time split (s)", ["time/step", "time/rollout", "time/reward", "time/judge",
                                       "time/teacher", "time/update"]),
              ("Peak memory (MB per rank)", ["mem/peak_mb"])]),
]

PAGE_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1400px;
  padding:12px 24px;color:#222}
h1{font-size:22px;margin:8px 0} h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin:16px 0 6px} nav a{margin-right:14px}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5} .num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:8px}
figure.plot{margin:0;border:1px solid #eee;border-radius:4px;padding:4px}
figure.plot svg{width:100%;height:auto;display:block}
figure.wide{grid-column:1/-1}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px;max-height:480px}
.muted{color:#777}
"""

CHECK_JS = """
(function(){ // rendered-DOM self-check for tests and humans: every chart drew, nothing was fetched
  var figs=document.querySelectorAll('figure.plot'), drawn=0;
  figs.forEach(function(f){var s=f.querySelector('svg'); if(s&&s.getBoundingClientRect().width>0)drawn++;});
  var bad=[].filter.call(document.images,function(i){return !(i.complete&&i.naturalWidth>0);}).length;
  var fetched=performance.getEntriesByType('resource').length, b=document.body.dataset;
  b.plots=drawn; b.tokens=document.querySelectorAll('.tokens .t').length; b.badImages=bad; b.fetched=fetched;
  b.ok=(drawn===figs.length&&bad===0&&fetched===0)?'1':'0';
})();
"""


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def _mean(vals: list[float]) -> float | None:
    return sum(vals) / len(vals) if vals else None


def _figure(svg: str, caption: str, wide: bool = False) -> str:
    return f'<figure class="plot{" wide" if wide else ""}" title="{escape(caption)}">{svg}</figure>'


def summary_table(runs: list[Run]) -> str:
    head = ("run", "folder", "steps", "RL reward first → last 10%", "answer acc last 10%",
            "s / SFT step", "s / RL step", "peak MB")
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for run in runs:
        last = run.rows[-1]["step"] if run.rows else 0
        planned = run.planned_steps()
        if not run.rows:
            status = "no metrics yet"
        elif planned is None or last >= planned:
            status = f"{last}" + (" (finished)" if planned else "")
        else:
            status = f"{last} of {planned} (running or stopped)"
        _, rew = run.series("reward/total")
        k = max(1, len(rew) // 10)
        acc = run.series("answer/acc")[1]
        time_of = {s: [float(r["time/step"]) for r in run.rows if r.get("stage") == s
                       and isinstance(r.get("time/step"), (int, float))] for s in ("sft", "rl")}
        mem = run.series("mem/peak_mb")[1]
        cells = [escape(run.label), escape(str(run.path)), escape(status),
                 f"{_fmt(_mean(rew[:k]))} → {_fmt(_mean(rew[-k:]))} ({len(rew)} steps)" if rew else "–",
                 _fmt(_mean(acc[-max(1, len(acc) // 10):]) if acc else None),
                 _fmt(_mean(time_of["sft"]), ".2f"), _fmt(_mean(time_of["rl"]), ".2f"),
                 _fmt(max(mem) if mem else None, ".0f")]
        out.append("<tr>" + "".join(f'<td class="{"num" if i > 2 else ""}">{c}</td>' for i, c in enumerate(cells))
                   + "</tr>")
    return "".join(out) + "</table>"


def chart_sections(runs: list[Run]) -> str:
    keys = set().union(*(r.keys() for r in runs)) if runs else set()
    components = sorted((k for k in keys if k.startswith("reward/") and k != "reward/total"),
                        key=lambda k: (list(COMPONENT_NAMES).index(k[7:]) if k[7:] in COMPONENT_NAMES else 99, k))
    sections = [(name, list(charts)) for name, charts in FIXED_CHARTS]
    sections[0][1][1:1] = [(f"{k} — {COMPONENT_NAMES.get(k[7:], k[7:])}", [k]) for k in components]
    val = sorted(k for k in keys if k.startswith("val/"))
    sections.insert(1, ("Validation", [(k, [k]) for k in val]))
    used = {k for _, charts in sections for _, ks in charts for k in ks}
    other = sorted(k for k in keys - used if not k.startswith("n/"))
    out = []
    for name, charts in sections:
        figs = [_figure(svg, ", ".join(ks)) for title, ks in charts if (svg := chart_svg(runs, title, ks))]
        if name == "Cost" and (svg := time_split_svg(runs)):
            figs.append(_figure(svg, "mean time split per step", wide=True))
        where = "this run" if len(runs) == 1 else "these runs"
        body = f'<div class="grid">{"".join(figs)}</div>' if figs else \
            f'<p class="muted">no {escape(name.lower())} metrics in {where}</p>'
        out.append(f'<h2 id="{escape(name.lower().replace(" ", "-"))}">{escape(name)}</h2>{body}')
    figs = [_figure(svg, k) for k in other if (svg := chart_svg(runs, k, [k]))]
    if figs:
        out.append(f'<details><summary>{len(figs)} other metrics</summary><div class="grid">{"".join(figs)}</div>'
                   "</details>")
    return "".join(out)


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_section(runs: list[Run]) -> str:
    out = []
    if len(runs) > 1:
        flats = [_flat(r.config) for r in runs]
        diff = sorted(k for k in set().union(*flats) if len({repr(f.get(k)) for f in flats}) > 1)
        rows = "".join(f"<tr><td>{escape(k)}</td>" + "".join(f"<td>{escape(repr(f.get(k, '–')))}</td>" for f in flats)
                       + "</tr>" for k in diff)
        out.append("<h3>Where the configs differ</h3><table><tr><th>key</th>"
                   + "".join(f"<th>{escape(r.label)}</th>" for r in runs) + f"</tr>{rows}</table>")
    for i, run in enumerate(runs):
        text = escape(run.config_text) or '<span class="muted">no config.toml in this folder</span>'
        out.append(f'<details{" open" if i == 0 and len(runs) == 1 else ""}><summary>config.toml of '
                   f"{escape(run.label)}</summary><pre>{text}</pre></details>")
    return "".join(out)


def render_page(runs: list[Run], credit_steps: int = 3) -> str:
    title = "visd run report: " + ", ".join(r.label for r in runs)
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<style>{PAGE_CSS}{CREDIT_CSS}</style></head><body data-ok=\"0\">"
            f"<h1>{escape(title)}</h1><p class=\"muted\">written {now} from "
            f"{escape(', '.join(str(r.path) for r in runs))}; it shows what the folders held at that moment.</p>"
            '<nav><a href="#summary">summary</a><a href="#reward">reward</a><a href="#visd-token-credit">VISD</a>'
            '<a href="#optimization">optimization</a><a href="#cost">cost</a><a href="#credit">token credit</a>'
            '<a href="#config">config</a></nav>'
            f'<h2 id="summary">Summary</h2>{summary_table(runs)}'
            f"{chart_sections(runs)}"
            f'<h2 id="credit">Token credit</h2>{credit_section(runs, credit_steps)}'
            f'<h2 id="config">Config</h2>{config_section(runs)}'
            f"<script>{CHECK_JS}</script></body></html>\n")
