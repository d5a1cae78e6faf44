"""The token-credit view: each recorded rollout's text, every token shaded by m_t, Δ_t or its
entropy (a radio switch per rollout, pure CSS), with the numbers on hover and the question,
verified answer and judge feedback beside it — visd Figure 8's reading of the same rollout.

Warm = m_t > 1 (a larger update than GRPO's) / Δ_t > 0 (the teacher favours the token more than
the student), cool = m_t < 1 / Δ_t < 0 (visd Figure 8's colours); opacity grows with the distance
from neutral, full at the clip bound 1 ± ε_w (m_t) or at the rollout's 90th-percentile |Δ_t|.
"""
from __future__ import annotations

from html import escape

from visd_core.report.runs import Run

WARM, COOL, ENTROPY = (214, 69, 28), (35, 99, 200), (125, 60, 170)
MAX_ALPHA = 0.8             # leaves the darkest token readable
NO_FEEDBACK = '<span class="muted">none (GRPO, λ = 0 or visd.feedback = false)</span>'

CREDIT_CSS = """
.rollout{border:1px solid #ddd;border-radius:6px;margin:10px 0;padding:8px 10px}
.rollout header{font-weight:600;margin-bottom:6px} .rollout .cols{display:flex;gap:14px;align-items:flex-start}
.rollout .textcol{flex:3;min-width:0} .rollout aside{flex:2;min-width:0;font-size:13px}
.rollout aside p{margin:2px 0 8px} .rollout aside b{display:block;color:#555;font-size:12px}
.tokens{font:13px/1.9 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word;
  border:1px solid #eee;padding:6px;border-radius:4px}
.tokens .t{border-radius:2px}
.switch{font-size:12px;margin-right:12px}
.legend{display:none;font-size:11px;margin:4px 0;align-items:center;gap:6px}
.legend .bar{display:inline-block;width:160px;height:10px;border:1px solid #ccc}
.legend span:not(.muted){white-space:nowrap}
.sm:checked~.tokens .t{background:var(--m)} .sd:checked~.tokens .t{background:var(--d)}
.sh:checked~.tokens .t{background:var(--h)}
.sm:checked~.lg-m,.sd:checked~.lg-d,.sh:checked~.lg-h{display:flex}
"""


def shade(value: float, center: float, scale: float, warm=WARM, cool=COOL) -> str:
    """rgba() of a token background: hue by the side of `center`, opacity by |value − center| / scale."""
    t = (value - center) / scale if scale > 0 else 0.0
    return _rgba(warm if t > 0 else cool, round(min(1.0, abs(t)) * MAX_ALPHA, 3))


def _rgba(rgb, alpha: float) -> str:
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha})"


def _legend(cls: str, lo: str, hi: str, stops: list[str], what: str) -> str:
    grad = f"linear-gradient(90deg,{','.join(stops)})"
    return (f'<div class="legend {cls}"><span>{escape(lo)}</span><span class="bar" style="background:{grad}"></span>'
            f'<span>{escape(hi)}</span><span class="muted">{escape(what)}; hover a token for its numbers</span></div>')


def _num(xs, i, spec):
    return "–" if xs is None or i >= len(xs) or xs[i] is None else format(xs[i], spec)


def delta_scale(delta: list[float]) -> float:
    """|Δ_t| that gets the full shade: the rollout's 90th percentile, so one outlier token (|Δ_t| of
    10 happens) does not wash out the rest; larger ones saturate, as m_t does at its clip."""
    mags = sorted(abs(x) for x in delta)
    return mags[min(len(mags) - 1, int(0.9 * len(mags)))] if mags else 0.0


def _text(piece) -> str:
    """Escaped token text; a CR as a character reference, which HTML keeps (a raw CR LF reads as LF)."""
    return escape(str(piece)).replace("\r", "&#13;")


def token_spans(rec: dict) -> str:
    toks, m, d = rec["tokens"], rec.get("m") or [], rec.get("delta") or []
    h, s, rho, inl = rec.get("entropy"), rec.get("adv_scale"), rec.get("ratio"), rec.get("in_loss")
    eps = float(rec.get("eps_w") or 0.0)
    d_scale = delta_scale(d)
    h_scale = max(h or [], default=0.0)
    out = []
    for i, piece in enumerate(toks):
        mi = m[i] if i < len(m) else 1.0
        di = d[i] if i < len(d) else 0.0
        hi = h[i] if h and i < len(h) else 0.0
        style = (f"--m:{shade(mi, 1.0, eps)};--d:{shade(di, 0.0, d_scale)};"
                 f"--h:{shade(hi, 0.0, h_scale, warm=ENTROPY)}")
        title = (f"m_t {_num(m, i, '.4f')} · Δ_t {_num(d, i, '+.4f')} · Â_t/A {_num(s, i, '.4f')} · "
                 f"ρ_t {_num(rho, i, '.4f')} · entropy {_num(h, i, '.3f')}"
                 + (" · not in the loss" if inl and i < len(inl) and not inl[i] else ""))
        out.append(f'<span class="t" data-i="{i}" data-m="{mi!r}" data-delta="{di!r}" style="{style}" '
                   f'title="{escape(title)}">{_text(piece)}</span>')
    return "".join(out)


def rollout_card(rec: dict, uid: str) -> str:
    lam, eps = rec.get("lambda", 0.0) or 0.0, rec.get("eps_w", 0.0) or 0.0
    comps = ", ".join(f"{k} {v:.2f}" for k, v in (rec.get("components") or {}).items() if isinstance(v, (int, float)))
    adv = rec.get("advantage")
    head = (f"step {rec.get('step')} (RL step {rec.get('rl_step')}) · rank {rec.get('rank', 0)} "
            f"rollout {rec.get('rollout')} · "
            f"A = {_num([adv], 0, '+.3f')} · reward {_num([rec.get('reward')], 0, '.3f')}"
            + (f" ({comps})" if comps else "") + f" · λ = {lam:.3f}")
    d_scale = delta_scale(rec.get("delta") or [])
    # What has something to show: m_t needs λ > 0 and A ≠ 0 (sign(A) = 0 makes every m_t 1, eq. 5);
    # Δ_t needs only the teacher (λ > 0); the entropy is always there.
    default = ("m" if adv else "d") if lam > 0 else "h"
    radios = "".join(
        f'<input type="radio" class="s{k}" name="shade-{uid}" id="{uid}-{k}"{" checked" if k == default else ""}>'
        f'<label class="switch" for="{uid}-{k}">{label}</label>'
        for k, label in (("m", "m_t"), ("d", "Δ_t"), ("h", "entropy")))
    diverging = [_rgba(COOL, MAX_ALPHA), _rgba(COOL, 0) + " 50%", _rgba(WARM, 0) + " 50%", _rgba(WARM, MAX_ALPHA)]
    legends = (_legend("lg-m", f"m_t {1 - eps:.2f}", f"{1 + eps:.2f}", diverging, "clear at 1, GRPO's weight")
               + _legend("lg-d", f"Δ_t {-d_scale:+.3f}", f"{d_scale:+.3f}", diverging,
                         "clear at 0, full at this rollout's 90th-percentile |Δ_t|")
               + _legend("lg-h", "entropy 0", f"{max(rec.get('entropy') or [0.0]):.2f}",
                         [_rgba(ENTROPY, 0), _rgba(ENTROPY, MAX_ALPHA)], "nats"))
    note = ("λ = 0 at this step (GRPO): no teacher, Δ_t = 0 and m_t = 1 everywhere." if lam <= 0 else
            "A = 0 (the group's rewards tie): no gradient and every m_t = 1; Δ_t is the teacher's view." if not adv
            else "")
    note = f'<p class="muted">{note}</p>' if note else ""
    options = "".join(f"<br>{escape(str(o))}" for o in rec.get("options") or [])
    fb = rec.get("feedback")
    aside = (f"<b>question</b><p>{escape(str(rec.get('question', '')))}{options}</p>"
             f"<b>verified answer</b><p>{escape(str(rec.get('answer', '')))}</p>"
             f"<b>judge feedback</b><p>{escape(fb) if fb else NO_FEEDBACK}</p>"
             f"<b>task · id</b><p>{escape(str(rec.get('task', '')))} · {escape(str(rec.get('id', '')))}</p>")
    return (f'<article class="rollout" data-step="{rec.get("step")}" data-rank="{rec.get("rank", 0)}" '
            f'data-rollout="{rec.get("rollout")}">'
            f"<header>{escape(head)}</header>{note}<div class=\"cols\"><div class=\"textcol\">{radios}{legends}"
            f'<div class="tokens">{token_spans(rec)}</div></div><aside>{aside}</aside></div></article>')


def pick_steps(steps: list[int], n: int) -> list[int]:
    """n steps spread from the first to the last recorded (all of them when n <= 0 or few)."""
    if n <= 0 or len(steps) <= n:
        return steps
    return sorted({steps[round(i * (len(steps) - 1) / (n - 1))] for i in range(n)}) if n > 1 else steps[-1:]


def credit_section(runs: list[Run], n_steps: int) -> str:
    out = []
    for ri, run in enumerate(runs):
        if len(runs) > 1:
            out.append(f"<h3>{escape(run.label)}</h3>")
        if not run.credit:
            out.append('<p class="muted">no token-credit records (credit/ is written every [report] credit_every '
                       "RL steps; older runs have none)</p>")
            continue
        shown = pick_steps(sorted(run.credit), n_steps)
        out.append(f'<p class="muted">{len(run.credit)} recorded steps; showing {", ".join(map(str, shown))}</p>')
        for step in shown:
            out.extend(rollout_card(rec, f"r{ri}s{step}n{j}") for j, rec in enumerate(run.credit[step]))
    return "".join(out)
