"""Token-credit records: what VISD did to each token of a few rollouts, for the run report.

Every `[report] credit_every` RL steps rank 0 writes `<dump_folder>/credit/step_NNNNNN.jsonl`
(NNNNNN = the global step, as in metrics.jsonl and checkpoints/): one JSON object per recorded
rollout — `[report] credit_rollouts` of them, gathered from every rank, both advantage signs
first — with its tokens (one string each, concatenating to the decoded completion) and, per
token, Δ_t (visd eq. 4), m_t (eq. 6), Â_t/A (eq. 7: (1 − λ) + λ·m_t), ρ_t (eq. 17) and the
entropy, all read from the fused loss pass's PolicyLossStats (recording costs no extra pass),
beside the prompt's question, the verified answer, the judge's feedback and the reward components.
`python -m visd_core.report RUN_DIR` renders them.
"""
from __future__ import annotations

import json
import logging
import os
from itertools import zip_longest
from pathlib import Path

import torch
import torch.distributed as dist

from kernels.stats import PolicyLossStats
from visd_core.parallel import Dist

log = logging.getLogger("visd")


def pick_rollouts(adv: list[float], n: int) -> list[int]:
    """Up to n rollout indices, alternating the most reinforced (A > 0) and the most penalized
    (A < 0) so both update directions are on show; rollouts with A = 0 (no gradient) come last."""
    best_first = sorted(range(len(adv)), key=lambda i: (-adv[i], i))
    pos = [i for i in best_first if adv[i] > 0]
    neg = [i for i in reversed(best_first) if adv[i] < 0]
    picks = [i for pair in zip_longest(pos, neg) for i in pair if i is not None]
    return (picks + [i for i in best_first if adv[i] == 0])[:n]


def _round(xs: torch.Tensor) -> list[float]:
    return [float(f"{x:.5g}") for x in xs.tolist()]     # 5 digits: the report shows 3-4; keeps files small


def credit_records(st: PolicyLossStats, seq_lens: torch.Tensor, tokens: torch.Tensor, picks: list[int], *,
                   tok, samples: list, texts: list[str], results: list, adv: torch.Tensor,
                   feedback: list[str | None] | None, lam: float, eps_w: float, step: int,
                   rl_step: int, algorithm: str) -> list[dict]:
    """One record per picked rollout b. `st`, `tokens` are [N] over all rollouts in order, rollout b
    holding the seq_lens[b] tokens after the first sum(seq_lens[:b]); the other lists are per rollout."""
    starts = torch.cumsum(seq_lens.cpu(), 0) - seq_lens.cpu()
    out = []
    for b in picks:
        s, n = int(starts[b]), int(seq_lens[b])
        sl = slice(s, s + n)
        m = st.token_weight[sl].float().cpu()
        a = float(adv[b])
        # Â_t / A as the kernel applied it; where A = 0 (no gradient) the factor it would have applied
        scale = st.advantages_hat[sl].float().cpu() / a if a != 0 else (1 - lam) + lam * m   # visd eq. 26
        rec, res = samples[b].record, results[b]
        out.append({
            "step": step, "rl_step": rl_step, "rollout": b, "algorithm": algorithm, "lambda": lam, "eps_w": eps_w,
            "id": rec.id, "task": rec.task, "question": rec.question, "options": list(rec.options),
            "answer": rec.answer, "feedback": feedback[b] if feedback is not None else None,
            "completion": texts[b], "reward": res.total, "components": dict(res.components),
            "advantage": a,
            "tokens": tok.decode_pieces(tokens[sl].tolist()),
            "delta": _round(st.delta[sl].float().cpu()),
            "m": _round(m),
            "adv_scale": _round(scale),
            "ratio": _round(st.ratio[sl].float().cpu()),
            "entropy": _round(st.entropy[sl].float().cpu()) if st.entropy is not None else None,
            "in_loss": [bool(w) for w in (st.loss_weights[sl] > 0).tolist()],
        })
    return out


def write_credit(folder: Path, step: int, records: list[dict]) -> Path:
    """<folder>/step_NNNNNN.jsonl, replaced whole (a resumed run rewrites its steps; a reader never
    sees half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:06d}.jsonl"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)
    return path


def record_credit(folder: Path, st: PolicyLossStats, cl, adv: torch.Tensor, n: int, d: Dist, **kw) -> Path | None:
    """The trainer's one call, on every rank: each offers its n best candidates, rank 0 keeps n of all
    of them and writes. Gathering matters: a weak policy often gives one rank only groups whose
    rewards tie (A = 0 everywhere, m_t = 1), while another rank has both signs to show."""
    try:
        local = credit_records(st, cl.seq_lens, cl.targets, pick_rollouts(adv.tolist(), n), adv=adv, **kw)
    except Exception:       # diagnostics never stop training: a rank raising here would leave the others
        # waiting in gather_object (or the next collective) until the process-group timeout
        log.warning("rank %d: token-credit record failed at step %s; offering none", d.rank, kw.get("step"),
                    exc_info=True)
        local = []
    for r in local:
        r["rank"] = d.rank
    pool = [local]
    if d.world_size > 1:                     # a few KB of Python objects, on credit steps only
        pool = [None] * d.world_size if d.is_main else None
        dist.gather_object(local, pool, dst=0)
    if not d.is_main:
        return None
    pool = [r for recs in pool for r in recs]
    if not pool:
        return None
    keep = [pool[i] for i in pick_rollouts([r["advantage"] for r in pool], n)]
    return write_credit(folder, kw["step"], keep)
