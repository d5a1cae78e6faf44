"""Peer benchmark: one GRPO/VISD policy-loss step from hidden states, ours against Liger-Kernel and TRL.

    python benchmarks/bench_peers.py                                # N = 4096, H = 1024, V = 151,936, fp32 and bf16
    python benchmarks/bench_peers.py --n 1024 --hidden 256 --repeat 1 --cases a,d   # a quick run
    python benchmarks/bench_peers.py --find-max-n --repeat 2        # at the largest N that (d) survives here
    python benchmarks/bench_peers.py --show bench_peers.json        # print a saved run's tables again

The same inputs — hidden [N, H], lm_head weight W [V, H], sampled tokens, near-on-policy old log-probs
(the current ones + N(0, 0.05²) noise, so almost no ratio clips: clipped tokens cost our kernels no
softmax sweep and would flatter them), one advantage per sequence of --seq-len tokens — through:

  (a) ours from hidden states: kernels.linear_visd_policy_loss (lm_head fused, chunked over tokens);
  (b) ours from logits: logits = F.linear(hidden, W) whole, then kernels.visd_policy_loss(...,
      inplace_backward=True);
  (c) Liger-Kernel's chunked fused-linear GRPO loss, liger_kernel.chunked_loss.LigerFusedLinearGRPOLoss
      (beta = 0: no reference model; loss_type "grpo", the per-sequence token mean then the mean over
      sequences, which is our seq_mean_token_mean aggregation of visd eq. 16);
  (d) the eager path of TRL's GRPOTrainer up to v1.9 (trl/trainer/grpo_trainer.py,
      _get_per_token_logps_and_entropies + _compute_loss): logits = F.linear(hidden, W) whole [B, T, V],
      logits.div_(temperature), trl.trainer.utils.selective_log_softmax, then the clipped surrogate
      with TRL's default loss_type "dapo" (sum over tokens / token count);
  (e) what TRL 1.16's GRPOTrainer does instead (huggingface/trl#7077): trl.kernels.ChunkedLogProbFunction
      (a streamed LM head in 4096-token x 32768-vocab tiles, the logits recomputed in the backward; on
      CPU its tiles are folded by torch ops, Triton only on CUDA/XPU), then the same surrogate as (d).

Ours run VISD at λ = --lam (Δ_t from a TeacherSupport, K = --k, built once outside the timed region by
kernels.linear_teacher_topk from a perturbed W) and the GRPO special case λ = 0 (delta=None). The peers
cannot do VISD's top-K credit, so they run λ = 0 only: compare (a)/(b) at λ = 0 with (c)/(d)/(e); the
λ = --lam rows are extra. With equal-length, unmasked sequences "grpo", "dapo" and our aggregation give
one loss, so every λ = 0 row prints the same loss and gradient norms (to rounding): a check that the
five paths compute the same thing.

One step = the loss forward + torch.autograd.grad w.r.t. hidden and W. Each (row, dtype) runs in its
own subprocess, after an unmeasured warm-up on an 8-token slice (imports, library loads; no [N, V]
work). --repeat rounds each run every row once, in turn, so that a change of load from other users
of the machine hits all rows alike; per row, "median s" and "best s" are the median (the upper one
of an even count) and the least wall time of its rounds, "cpu s" the median process CPU time (the
steadiest of the three where other work shares the cores), and its memory the largest peak.

Memory is bench_kernels' probe: the resident-set high-water mark (VmHWM) above the resident inputs;
"> in+grads" also subtracts the two gradients [N, H] and [V, H] that every path returns. "[N,V]x" is
that over N·V·(bytes of the dtype): how many logits-sized buffers the path holds at once.
Ratios are against (d) of the same run and dtype: "x (d)" = (d)'s best time / the row's best time,
"cpu x" the same for the CPU times, "% (d)" = the row's peak / (d)'s peak.

Memory cap: each measuring process sets RLIMIT_AS so that it cannot grow past --mem-cap-frac of the
memory available at the start (MemAvailable); past it an allocation fails inside the process, the row
reads over_cap and the run goes on, before the machine swaps or the OOM killer picks a
victim. --find-max-n, per dtype: measures (d) at N = seq_len and 2·seq_len, fits its whole-process
peak as α + β·N, takes the largest multiple of seq_len whose predicted peak fits the cap, confirms (d)
at it (stepping down on failure) and then measures every case at that N.

Peers are the `bench` extra (pip install -e '.[bench]'); a missing one prints a skip line. Timings
are printed and saved (--out), never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from bench_kernels import DTYPES, REPO, _memory_probe  # noqa: E402  (the VmHWM probe bench_kernels uses)

SEQ_ADVANTAGES = (1.0, -0.5, 0.7, -1.2)  # one per sequence, cycled: both signs, unequal sizes
CLIP_EPS = 0.2                           # ε_low = ε_high = 0.2 everywhere (TRL's and our defaults)
OLD_LOGPROB_NOISE = 0.05                 # |log ratio| > 0.18 (a clip) is a 3.6σ event
TRL_LOSS_TYPE = "dapo"                   # GRPOConfig.loss_type's default in TRL 1.9 and 1.16
LIGER_LOSS_TYPE = "grpo"                 # Liger's type closest to our seq_mean_token_mean
TRL_VOCAB_CHUNK = 32768                  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE in TRL 1.16
PEER_PACKAGES = {"c": "liger_kernel", "d": "trl", "e": "trl"}
DISTRIBUTIONS = {"liger_kernel": "liger-kernel", "trl": "trl"}
LABELS = {
    "a": "(a) ours linear_visd_policy_loss",
    "b": "(b) ours logits+visd_policy_loss",
    "c": "(c) Liger FusedLinearGRPOLoss",
    "d": "(d) TRL<=1.9 eager logits",
    "e": "(e) TRL 1.16 streamed head",
}


# ---- inputs (rebuilt identically in every process from the seed) ---------------------------------

def make_inputs(n, hidden_size, vocab, seq_len, dtype, seed=0):
    """hidden, W, tokens and per-sequence advantages; logits = hidden @ W.T have std ≈ 3, a peaked
    LM-like softmax over V."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    hidden = torch.empty(n, hidden_size, dtype=dtype).normal_(0.0, 1.0, generator=gen)
    weight = torch.empty(vocab, hidden_size, dtype=dtype).normal_(0.0, 3.0 / hidden_size**0.5, generator=gen)
    tokens = torch.randint(0, vocab, (n,), generator=gen)
    seq_adv = torch.tensor([SEQ_ADVANTAGES[i % len(SEQ_ADVANTAGES)] for i in range(n // seq_len)])
    return hidden, weight, tokens, seq_adv


def prepare(n, hidden_size, vocab, seq_len, dtype_name, k, path):
    """Old log-probs (the current ones + noise) and the teacher support, saved to `path`: computed once
    per dtype, outside every timed region and every measuring process."""
    import torch

    import kernels

    hidden, weight, tokens, _ = make_inputs(n, hidden_size, vocab, seq_len, getattr(torch, DTYPES[dtype_name]))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        old = kernels.linear_token_logprobs(hidden, weight, tokens).float()
        old += OLD_LOGPROB_NOISE * torch.randn(n, generator=gen)
        # the teacher: W perturbed by 20% of its scale, so Δ_t spreads and some token weights clip
        teacher_w = weight + torch.empty_like(weight).normal_(0.0, 0.6 / hidden_size**0.5, generator=gen)
        support = kernels.linear_teacher_topk(hidden, teacher_w, tokens, k)
    fields = {f.name: getattr(support, f.name) for f in dataclasses.fields(support)}
    torch.save({"old_logprobs": old, "support": fields}, path)


def _load_prepared(path):
    import torch

    from kernels import TeacherSupport

    saved = torch.load(path, weights_only=True)
    return saved["old_logprobs"], TeacherSupport(**saved["support"])


def _head(support, n):
    """The first n tokens of a TeacherSupport (for the warm-up slice)."""
    return dataclasses.replace(support, **{f.name: getattr(support, f.name)[:n] for f in dataclasses.fields(support)
                                           if f.name != "temperature" and getattr(support, f.name) is not None})


# ---- the five paths: each returns the loss, differentiable w.r.t. hidden and W --------------------

def trl_surrogate(per_token_logps, old_per_token_logps, seq_advantages, mask, loss_type):
    """The clipped surrogate and aggregation of TRL's GRPOTrainer._compute_loss (trl/trainer/grpo_trainer.py,
    identical in v1.9.0 and v1.16.0) with beta = 0, token-level importance sampling, one process, no
    gradient accumulation (so num_items_in_batch is this batch's token count)."""
    import torch

    advantages = seq_advantages.unsqueeze(1)
    coef_1 = torch.exp(per_token_logps - old_per_token_logps)
    coef_2 = torch.clamp(coef_1, 1 - CLIP_EPS, 1 + CLIP_EPS)
    per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)
    if loss_type == "grpo":
        return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "dapo":
        return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    raise ValueError(f"unsupported TRL loss_type {loss_type!r}")


def loss_a(x, lam):
    import kernels

    return kernels.linear_visd_policy_loss(x["hidden"], x["weight"], x["tokens"], x["old"], x["adv"],
                                           x["support"] if lam else None, x["seq_lens"], lam)


def loss_b(x, lam):
    import torch.nn.functional as F

    import kernels

    logits = F.linear(x["hidden"], x["weight"])  # lm_head: the whole [N, V]
    return kernels.visd_policy_loss(logits, x["tokens"], x["old"], x["adv"], x["support"] if lam else None,
                                    x["seq_lens"], lam, inplace_backward=True)


def loss_c(x, lam):
    import torch
    from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss

    b, t = x["seq_adv"].shape[0], x["seq_len"]
    # compiled=False: TRL leaves Liger's default (True), which compiles only the O(N) per-token loss
    # math, not the [T, V] tiles; on CPU that is minutes of inductor C++ builds and a recompile per shape.
    liger = LigerFusedLinearGRPOLoss(beta=0.0, use_ref_model=False, loss_type=LIGER_LOSS_TYPE, compiled=False,
                                     epsilon_low=CLIP_EPS, epsilon_high=CLIP_EPS)
    loss, _metrics = liger(x["hidden"].view(b, t, -1), x["weight"], x["tokens"].view(b, t),
                           torch.ones(b, t, dtype=torch.long), x["seq_adv"],
                           old_per_token_logps=x["old"].view(b, t))
    return loss


def loss_d(x, lam):
    import torch
    import torch.nn.functional as F
    from trl.trainer.utils import selective_log_softmax

    b, t = x["seq_adv"].shape[0], x["seq_len"]
    logits = F.linear(x["hidden"], x["weight"]).view(b, t, -1)  # the model's lm_head output [B, T, V]
    logits.div_(1.0)  # TRL <= 1.9 divides by the sampling temperature in place, 1.0 included
    logps = selective_log_softmax(logits, x["tokens"].view(b, t))
    return trl_surrogate(logps, x["old"].view(b, t), x["seq_adv"], torch.ones(b, t), TRL_LOSS_TYPE)


def loss_e(x, lam):
    import torch
    from trl.kernels import ChunkedLogProbFunction

    b, t = x["seq_adv"].shape[0], x["seq_len"]
    # as trl.trainer.utils.add_fused_lm_head's forward calls it on CPU (no bias, softcap or logit scale);
    # the trainer also asks for the entropy (a metric) in the same sweep: left out, as for the others
    logps = ChunkedLogProbFunction.apply(x["hidden"], x["weight"], None, x["tokens"], 1.0, TRL_VOCAB_CHUNK, None, 1.0,
                                         ("log_probs",))[0]
    return trl_surrogate(logps.view(b, t), x["old"].view(b, t), x["seq_adv"], torch.ones(b, t), TRL_LOSS_TYPE)


LOSSES = {"a": loss_a, "b": loss_b, "c": loss_c, "d": loss_d, "e": loss_e}


# ---- one measurement (runs in a fresh subprocess) -------------------------------------------------

def _proc_status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _cap_address_space(budget_bytes):
    """Let this process's resident set grow to `budget_bytes` at most: an allocation past it fails with
    an exception here instead of the machine swapping or the OOM killer choosing a victim. RLIMIT_AS
    counts address space, so the limit is today's address space plus the budget's unused part."""
    if budget_bytes:
        room = max(0, budget_bytes - _proc_status("VmRSS"))
        limit = _proc_status("VmSize") + room
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _is_out_of_memory(err):
    text = str(err)
    return isinstance(err, MemoryError) or "can't allocate memory" in text or "Cannot allocate memory" in text


def measure(spec):
    """One row: spec has case, lam, dtype, n, hidden, vocab, seq_len, repeat, threads, prepared, mem_cap."""
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    dtype = getattr(torch, DTYPES[spec["dtype"]])
    n, seq_len, lam = spec["n"], spec["seq_len"], spec["lam"]
    hidden, weight, tokens, seq_adv = make_inputs(n, spec["hidden"], spec["vocab"], seq_len, dtype)
    old, support = _load_prepared(spec["prepared"])
    hidden.requires_grad_()
    weight.requires_grad_()
    x = {"hidden": hidden, "weight": weight, "tokens": tokens, "old": old, "seq_adv": seq_adv, "seq_len": seq_len,
         "adv": seq_adv.repeat_interleave(seq_len), "support": support, "seq_lens": [seq_len] * (n // seq_len)}
    loss_fn = LOSSES[spec["case"]]

    # warm-up on the first 8 tokens as one sequence: loads the C++ library and the peers' imports
    w = 8
    few = dict(x, hidden=hidden.detach()[:w].clone().requires_grad_(), tokens=tokens[:w], old=old[:w],
               seq_adv=seq_adv[:1], seq_len=w, adv=x["adv"][:w], support=_head(support, w), seq_lens=[w])
    torch.autograd.grad(loss_fn(few, lam), (few["hidden"], weight))
    del few

    _cap_address_space(spec["mem_cap"])
    reset_peak, peak_above = _memory_probe(torch.device("cpu"))
    runs = []
    try:
        for _ in range(spec["repeat"]):
            reset_peak()
            base_rss = _proc_status("VmRSS")
            cpu0, t0 = time.process_time(), time.perf_counter()
            loss = loss_fn(x, lam)
            g_hidden, g_weight = torch.autograd.grad(loss, (hidden, weight))
            t1, cpu1 = time.perf_counter(), time.process_time()
            runs.append({"seconds": t1 - t0, "cpu_seconds": cpu1 - cpu0, "peak_above_inputs": peak_above(),
                         "base_rss": base_rss, "loss": float(loss),
                         "grad_hidden_norm": float(g_hidden.float().norm()),
                         "grad_weight_norm": float(g_weight.float().norm())})
            del loss, g_hidden, g_weight
    except (RuntimeError, MemoryError) as err:
        if not _is_out_of_memory(err):
            raise
        return {"status": "over_cap", "error": str(err).splitlines()[0][:200]}
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # the median run
    best["peak_above_inputs"] = max(r["peak_above_inputs"] for r in runs)
    best["all_seconds"] = [r["seconds"] for r in runs]
    best["grad_bytes"] = (hidden.numel() + weight.numel()) * hidden.element_size()
    best["peak_above_inputs_and_grads"] = best["peak_above_inputs"] - best["grad_bytes"]
    best["logits_bytes"] = n * spec["vocab"] * hidden.element_size()
    best["status"] = "ok"
    return best


# ---- the driver ----------------------------------------------------------------------------------

def mem_available():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable missing from /proc/meminfo")


def _run_python(code, *argv):
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO)


def _preamble():
    return f"import json, sys; sys.path[:0] = [{str(REPO)!r}, {str(BENCH_DIR)!r}]; import bench_peers as bp; "


def run_prepare(args, n, dtype_name, path):
    out = _run_python(_preamble() + f"bp.prepare({n}, {args.hidden}, {args.vocab}, {args.seq_len}, "
                                    f"{dtype_name!r}, {args.k}, {str(path)!r})")
    if out.returncode != 0:
        raise RuntimeError(f"preparing the {dtype_name} inputs failed:\n{out.stderr[-3000:]}")


def run_row(args, case, lam, dtype_name, n, prepared, mem_cap):
    """One timed step of one row, in a fresh process."""
    spec = {"case": case, "lam": lam, "dtype": dtype_name, "n": n, "hidden": args.hidden, "vocab": args.vocab,
            "seq_len": args.seq_len, "repeat": 1, "threads": args.threads,
            "prepared": str(prepared), "mem_cap": mem_cap}
    out = _run_python(_preamble() + "print(json.dumps(bp.measure(json.loads(sys.argv[1]))))", json.dumps(spec))
    if out.returncode != 0:  # a crash or a kill (-9: the OOM killer) is a row, not the end of the run
        tail = out.stderr.strip().splitlines()[-1:] or [""]
        row = {"status": f"failed (exit {out.returncode})", "error": tail[0][:200]}
    else:
        row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(case=case, lam=lam, dtype=dtype_name, n=n)
    return row


def missing_peers(cases):
    """{case: package} for the peers whose package is not installed."""
    return {c: PEER_PACKAGES[c] for c in cases
            if c in PEER_PACKAGES and importlib.util.find_spec(PEER_PACKAGES[c]) is None}


def rows_for(cases, lam):
    """(case, λ) in table order: ours at λ = 0 (the GRPO rows the peers are compared with) and λ = lam."""
    rows = [(c, 0.0) for c in cases]
    rows += [(c, lam) for c in cases if c in ("a", "b") and lam != 0.0]
    return rows


def measure_table(args, cases, dtype_name, n, workdir, mem_cap, results, out_path):
    """--repeat rounds, each running every row once in turn (a fresh process per run), so that a change
    of load from other users of the machine hits every row alike; per row, the median-time run."""
    prepared = Path(workdir) / f"prepared_{dtype_name}_{n}.pt"
    if not prepared.exists():
        run_prepare(args, n, dtype_name, prepared)
    rows = rows_for(cases, args.lam)
    runs = {row: [] for row in rows}
    for round_index in range(args.repeat):
        for case, lam in rows:
            run = run_row(args, case, lam, dtype_name, n, prepared, mem_cap)
            run["round"] = round_index
            runs[(case, lam)].append(run)
            results.append(run)
            write_json(out_path, args, results)  # after every run: a long run cut short keeps what it measured
            print(f"  round {round_index + 1}/{args.repeat}: {LABELS[case]} λ={lam:g} {dtype_name} N={n}: "
                  f"{run['status']}" + (f", {run['seconds']:.2f} s" if run["status"] == "ok"
                                        else f" ({run.get('error', '')})"), flush=True)
    table = [combine(runs[row]) for row in rows]
    add_ratios(table)
    return table


def combine(runs):
    """One table row from a row's runs: the median-time run, with the largest peak of them all."""
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        return dict(failed[0], status=f"{failed[0]['status']} in {len(failed)} of {len(runs)} rounds")
    ordered = sorted(runs, key=lambda r: r["seconds"])
    row = dict(ordered[len(ordered) // 2])
    row.pop("round", None)
    cpu = sorted(r["cpu_seconds"] for r in runs)
    row.update(all_seconds=[r["seconds"] for r in runs], all_cpu_seconds=[r["cpu_seconds"] for r in runs],
               best_seconds=ordered[0]["seconds"], cpu_seconds=cpu[len(cpu) // 2],
               peak_above_inputs=max(r["peak_above_inputs"] for r in runs),
               peak_above_inputs_and_grads=max(r["peak_above_inputs_and_grads"] for r in runs))
    return row


def add_ratios(table):
    ref = next((r for r in table if r["case"] == "d" and r["status"] == "ok"), None)
    for r in table:
        if r["status"] == "ok":
            r["buffers_of_logits"] = r["peak_above_inputs_and_grads"] / r["logits_bytes"]
            if ref is not None:
                r["speedup_vs_d"] = ref["best_seconds"] / r["best_seconds"]
                r["cpu_speedup_vs_d"] = ref["cpu_seconds"] / r["cpu_seconds"]
                r["peak_vs_d"] = r["peak_above_inputs"] / ref["peak_above_inputs"]


def print_table(args, table, dtype_name, n, mem_cap):
    import torch

    mb = 2**20
    print(f"\n{dtype_name}: N={n} H={args.hidden} V={args.vocab} K={args.k}, {n // args.seq_len} sequences of "
          f"{args.seq_len}, threads={args.threads or torch.get_num_threads()}, "
          f"memory: VmHWM above the resident inputs, "
          + (f"cap {mem_cap / 2**30:.1f} GiB" if mem_cap else "no cap recorded"))
    header = (f"{'row':<38}{'λ':>5}{'median s':>9}{'best s':>8}{'cpu s':>7}{'x (d)':>7}{'cpu x':>7}{'peak>in MB':>11}"
              f"{'>in+grads MB':>13}"
              f"{'% (d)':>7}{'[N,V]x':>7}{'loss':>11}{'|dL/dW|':>10}{'|dL/dh|':>10}")
    print(header + "\n" + "-" * len(header))
    for r in table:
        name = LABELS[r["case"]] + (" [GRPO]" if r["case"] in PEER_PACKAGES else "")
        if r["status"] != "ok":
            print(f"{name:<38}{r['lam']:>5g}  {r['status']}: {r.get('error', '')}")
            continue
        print(f"{name:<38}{r['lam']:>5g}{r['seconds']:>9.2f}{r.get('best_seconds', r['seconds']):>8.2f}"
              f"{r['cpu_seconds']:>7.1f}"
              f"{r.get('speedup_vs_d', float('nan')):>7.2f}{r.get('cpu_speedup_vs_d', float('nan')):>7.2f}"
              f"{r['peak_above_inputs'] / mb:>11.0f}"
              f"{r['peak_above_inputs_and_grads'] / mb:>13.0f}{100 * r.get('peak_vs_d', float('nan')):>7.1f}"
              f"{r['buffers_of_logits']:>7.2f}{r['loss']:>11.6f}{r['grad_weight_norm']:>10.4g}"
              f"{r['grad_hidden_norm']:>10.4g}")


def linear_chunk_tokens():
    """(a)'s token chunk, as kernels.linear_ops defines it (read from the source: no torch import here)."""
    for line in (REPO / "kernels" / "linear_ops.py").read_text().splitlines():
        if line.startswith("DEFAULT_CHUNK_TOKENS"):
            return int(line.split("=")[1].split("#")[0])
    return None


def versions():
    out = {"ours_chunk_tokens": linear_chunk_tokens()}
    for dist in ("torch", "liger-kernel", "trl", "visd"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def write_json(path, args, results, tables=(), mem_cap=None):
    """The raw runs (one per row and round) and, at the end, the printed tables."""
    Path(path).write_text(json.dumps({"command": " ".join(sys.argv), "args": vars(args), "versions": versions(),
                                      "mem_cap": mem_cap, "runs": results,
                                      "tables": [{"dtype": d, "n": n, "rows": rows} for d, n, rows in tables]},
                                     indent=2))


def find_max_n(args, dtype_name, workdir, mem_cap, results, out_path):
    """The largest multiple of seq_len at which (d) stays under the cap: (d)'s whole-process peak (resident
    inputs + the step's high-water mark) measured at two small N, extrapolated linearly, then confirmed."""
    probes = []
    for n in (args.seq_len, 2 * args.seq_len):
        prepared = Path(workdir) / f"prepared_{dtype_name}_{n}.pt"
        run_prepare(args, n, dtype_name, prepared)
        row = run_row(args, "d", 0.0, dtype_name, n, prepared, mem_cap)
        if row["status"] != "ok":
            raise RuntimeError(f"(d) fails at the probe N={n}: {row}")
        results.append(dict(row, probe=True))
        probes.append((n, row["base_rss"] + row["peak_above_inputs"], row))
    (n1, p1, r1), (n2, p2, _) = probes
    per_token = (p2 - p1) / (n2 - n1)
    fixed = p1 - per_token * n1
    elem = r1["logits_bytes"] // (n1 * args.vocab)
    print(f"\n(d) {dtype_name}: whole-process peak ≈ {fixed / 2**30:.2f} GiB + N x {per_token / 2**20:.2f} MiB "
          f"(= {per_token / (args.vocab * elem):.2f} [1, V] rows of the dtype per token); "
          f"cap {mem_cap / 2**30:.1f} GiB", flush=True)
    n = int((mem_cap - fixed) // per_token) // args.seq_len * args.seq_len
    for _ in range(4):  # confirm; on failure step down by one sequence
        if n < args.seq_len:
            raise RuntimeError(f"(d) does not fit the cap at N={args.seq_len}")
        prepared = Path(workdir) / f"prepared_{dtype_name}_{n}.pt"
        run_prepare(args, n, dtype_name, prepared)
        row = run_row(args, "d", 0.0, dtype_name, n, prepared, mem_cap)
        print(f"  (d) {dtype_name} at N={n}: {row['status']}"
              + (f", peak {(row['base_rss'] + row['peak_above_inputs']) / 2**30:.2f} GiB (predicted "
                 f"{(fixed + per_token * n) / 2**30:.2f})" if row["status"] == "ok" else ""), flush=True)
        if row["status"] == "ok":
            return n
        prepared.unlink()
        n -= args.seq_len
    raise RuntimeError("(d) kept failing below the predicted N")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4096, help="N, completion tokens (a multiple of --seq-len)")
    parser.add_argument("--hidden", type=int, default=1024, help="H, the hidden size")
    parser.add_argument("--vocab", type=int, default=151936, help="V (Qwen2.5's 151,936)")
    parser.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence (one advantage each)")
    parser.add_argument("--k", type=int, default=16, help="teacher top-K of the VISD rows")
    parser.add_argument("--lam", type=float, default=0.5,
                        help="λ of the extra VISD rows of (a) and (b) (0: no extra rows)")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--cases", default="a,b,c,d,e")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds: each runs every row once, in turn, in its own process; a row's time is "
                             "the median")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    parser.add_argument("--mem-cap-frac", type=float, default=0.6,
                        help="no measuring process may grow past this fraction of MemAvailable at the start")
    parser.add_argument("--find-max-n", action="store_true",
                        help="per dtype: find the largest N (a multiple of --seq-len) that (d) survives under the "
                             "cap, then measure every case there (ignores --n)")
    parser.add_argument("--out", default=str(REPO / "bench_peers.json"))
    parser.add_argument("--show", metavar="FILE.json", help="print the tables of a saved run again and exit")
    args = parser.parse_args()
    if args.show:
        return show(args.show)

    cases = [c for c in args.cases.split(",") if c]
    if unknown := [c for c in cases if c not in LOSSES]:
        parser.error(f"unknown cases {unknown}; choose from {','.join(LOSSES)}")
    if args.n % args.seq_len:
        parser.error(f"--n {args.n} must be a multiple of --seq-len {args.seq_len}")
    for case, package in missing_peers(cases).items():
        print(f"skip ({case}) {LABELS[case]}: the {DISTRIBUTIONS[package]} package is not installed "
              f"(pip install -e '.[bench]')")
        cases.remove(case)
    if "d" not in cases:
        print("no (d) in this run: the ratio columns stay empty")
    mem_cap = int(args.mem_cap_frac * mem_available())

    results, tables = [], []
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as workdir:
        for dtype_name in args.dtypes.split(","):
            n = find_max_n(args, dtype_name, workdir, mem_cap, results, args.out) if args.find_max_n else args.n
            tables.append((dtype_name, n, measure_table(args, cases, dtype_name, n, workdir, mem_cap, results,
                                                        args.out)))
    for dtype_name, n, table in tables:
        print_table(args, table, dtype_name, n, mem_cap)
    print("versions:", versions())
    write_json(args.out, args, results, tables, mem_cap)
    print(f"wrote {args.out}")


def show(path):
    """Prints the tables of a saved run again, from its raw runs (the ratio columns recomputed)."""
    saved = json.loads(Path(path).read_text())
    args = argparse.Namespace(**saved["args"])
    groups = {}
    for run in saved["runs"]:
        if not run.get("probe"):  # --find-max-n's probes are not table rows
            groups.setdefault((run["dtype"], run["n"]), {}).setdefault((run["case"], run["lam"]), []).append(run)
    for (dtype_name, n), rows in groups.items():
        table = [combine(runs) for runs in rows.values()]
        add_ratios(table)
        print_table(args, table, dtype_name, n, saved.get("mem_cap"))
    print("versions:", saved["versions"])


if __name__ == "__main__":
    main()
