"""Does VISD beat GRPO? One SFT model, then GRPO and VISD RL from it on the same seeds, compared on
held-out validation, with VISD's training diagnostics and a hindsight diagnostic of its teacher view.

    .venv/bin/python benchmarks/visd_vs_grpo.py --config configs/tiny_synthetic.toml --out runs/visd_vs_grpo \\
        --seeds 0 1 2 [--sft-steps S] [--rl-steps R] [--eval-every E] [--nproc 2] [--eval-samples N] \\
        [--hindsight 16] [-- --section.key=value ...]

1. SFT once (`--training.stage=sft`), exported to OUT/sft/export (reused when it exists: delete it to redo).
2. For each seed, GRPO then VISD RL from that export (`--training.stage=rl --algorithm.name=grpo|visd
   --job.seed=SEED`) into OUT/<algo>_s<seed>; the same seed gives both the same data order. VISD
   uses the config's [visd], [teacher] and [judge]. Every run is a real `torchrun ... train.py`, its
   output in OUT/<run>/log.txt. A run whose config.toml matches and whose metrics.jsonl and last
   checkpoint reach step R is skipped (the study resumes); an incomplete one restarts from scratch.
   A failed run is reported (exit code, end of its log) and left out of the tables.
3. Writes OUT/table.md (validation mean ± sample std over seeds at every validation step, the
   paired final-step difference VISD − GRPO, training diagnostics), OUT/table.json (the same
   numbers, per-seed values, the commands and the resolved config) and OUT/curves.png, and prints
   table.md. The std is the sample std (n − 1); with one seed a cell shows the mean alone.
4. Hindsight (--hindsight N, 0 = off), in this process on the first seed's final VISD checkpoint:
   for N validation records, one sampled completion (rollout settings, seed 0), its rule-judge
   feedback (never an HTTP judge), then the policy's next-token distributions on that completion
   under the student prompt against the teacher prompt (hindsight block with, and without, the
   feedback): top-K overlap, mean |Δ_t| (visd eq. 4, renormalized on TopK ∪ {y_t}, the trainer's
   kernel) and how often the top-1 token differs.

Extra arguments after `--` go to every run (e.g. data paths); the keys the study sets itself are refused.

Time, measured on 2 CPU cores shared with another 2-process training (so roughly halved on idle
cores), at the test's size (tiny model, vocab_subset = "data", 4 frames, 12 new tokens, 2 processes):
SFT 30 steps 25 s; an RL run 18-22 s with 2 steps and 28-32 s with 8, i.e. ~16 s fixed per torchrun
(start-up, checkpoint, run report) plus ~1.5 s a step; hindsight on 2 records 6 s; the whole 2-seed,
2-step study ~110 s. It grows linearly: SFT + 2 x seeds x (16 s + R x RL step); an RL step costs far
more at the config's own sizes (frames, max_new_tokens), so time one with --rl-steps 2 first.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from visd_core.config import load_config, to_toml      # noqa: E402  (stdlib only: cheap)

ALGORITHMS = ("grpo", "visd")
VAL_METRICS = (("val/answer_accuracy", "answer accuracy %"), ("val/format_rate", "format rate %"),
               ("val/temporal_mIoU", "temporal mIoU %"), ("val/temporal_R@0.5", "temporal R@0.5 %"),
               ("val/spatial_mIoU", "spatial mIoU %"), ("val/reward", "mean reward"))
PLOTTED = ("val/answer_accuracy", "val/format_rate", "val/temporal_mIoU", "val/spatial_mIoU", "val/reward")
TRAIN_KEYS = ("reward/total", "delta/mean", "delta/std", "delta/abs_mean", "token_weight/mean",
              "token_weight/clip_high_frac", "token_weight/clip_low_frac", "ratio/clip_frac", "adv/zero_frac",
              "visd/lambda")
# Teacher-dependent keys mean something only while λ > 0 (after that the teacher is off and they are
# constants), so for a run with such steps they are averaged over those steps alone.
TEACHER_KEYS = ("delta/", "token_weight/")
# Keys every run gets from the study itself: an extra override of one would be silently overruled.
STUDY_KEYS = {"training.stage", "training.sft_steps", "training.rl_steps", "job.dump_folder", "job.seed",
              "model.path", "algorithm.name", "checkpoint.export", "checkpoint.resume", "eval.every",
              "eval.num_samples"}
LOG_TAIL_LINES = 15


# ---------------------------------------------------------------------------- arguments
def parse_args(argv: list[str]):
    """(study args, extra overrides after `--`). ValueError on a bad value."""
    own, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="TOML config of every run")
    p.add_argument("--out", required=True, help="study folder (runs, tables, curves)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sft-steps", type=int, help="default: the config's training.sft_steps")
    p.add_argument("--rl-steps", type=int, help="default: the config's training.rl_steps")
    p.add_argument("--eval-every", type=int, help="default: the config's eval.every (0 there: start and end only)")
    p.add_argument("--eval-samples", type=int, help="validation records; default: the config's eval.num_samples")
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes per run")
    p.add_argument("--hindsight", type=int, default=16, help="validation records of the hindsight diagnostic (0 = off)")
    args = p.parse_args(own)
    for o in extra:
        key = o[2:].split("=", 1)[0] if o.startswith("--") else o
        if key in STUDY_KEYS:
            raise ValueError(f"override {o!r}: {key} is set by the study (use its own flag, or none)")
    cfg = load_config(args.config, extra)       # bad extras fail here, not in the first torchrun
    args.sft_steps = cfg.training.sft_steps if args.sft_steps is None else args.sft_steps
    args.rl_steps = cfg.training.rl_steps if args.rl_steps is None else args.rl_steps
    args.eval_every = (cfg.eval.every or args.rl_steps) if args.eval_every is None else args.eval_every
    args.eval_samples = cfg.eval.num_samples if args.eval_samples is None else args.eval_samples
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise ValueError(f"--seeds {args.seeds}: need distinct seeds >= 0")
    for name in ("sft_steps", "rl_steps", "eval_every", "eval_samples", "nproc"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} = {getattr(args, name)}: must be >= 1")
    if args.hindsight < 0:
        raise ValueError(f"--hindsight = {args.hindsight}: must be >= 0 (0 = off)")
    return args, extra


# ---------------------------------------------------------------------------- runs
def sft_overrides(args, out: Path) -> list[str]:
    return ["--training.stage=sft", f"--training.sft_steps={args.sft_steps}", f"--job.dump_folder={out / 'sft'}",
            "--checkpoint.export=true", "--eval.every=0"]


def rl_overrides(args, out: Path, algo: str, seed: int) -> list[str]:
    return ["--training.stage=rl", f"--model.path={out / 'sft' / 'export'}", f"--algorithm.name={algo}",
            f"--job.seed={seed}", f"--training.rl_steps={args.rl_steps}", f"--eval.every={args.eval_every}",
            f"--eval.num_samples={args.eval_samples}", f"--job.dump_folder={out / run_name(algo, seed)}",
            "--checkpoint.export=false"]


def run_name(algo: str, seed: int) -> str:
    return f"{algo}_s{seed}"


def torchrun_cmd(config: str, nproc: int, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(ROOT / "train.py"), "--config", config, *overrides]


def read_rows(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rl_run_complete(folder: Path, cmd: list[str], expected_toml: str, last_step: int) -> bool:
    """The same command (world size included) and resolved config (the TOML file may have changed),
    a metrics row of the last RL step and its committed checkpoint (the trainer writes the
    checkpoint after the row, and the hindsight diagnostic loads it)."""
    cfg_file, log = folder / "config.toml", folder / "log.txt"
    if not cfg_file.is_file() or cfg_file.read_text() != expected_toml:
        return False
    if not log.is_file() or log.read_text(errors="replace").split("\n", 1)[0] != "$ " + shlex.join(cmd):
        return False
    ckpt = folder / "checkpoints" / f"step_{last_step:06d}" / "COMMITTED"
    return ckpt.is_file() and any(r["step"] == last_step and r.get("stage") == "rl" for r in read_rows(folder))


def launch(cmd: list[str], folder: Path, nproc: int) -> tuple[int, float]:
    """Run one torchrun to completion, its stdout and stderr into folder/log.txt: (exit code, wall s)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # Cores split between the processes unless told otherwise: none oversubscribed.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    t0 = time.perf_counter()
    with open(folder / "log.txt", "w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    return rc, time.perf_counter() - t0


def log_tail(folder: Path, n: int = LOG_TAIL_LINES) -> str:
    lines = (folder / "log.txt").read_text(errors="replace").splitlines()
    return "\n".join("    " + line[-300:] for line in lines[-n:])


def previous_walls(out: Path) -> dict[str, float]:
    """Wall times of the runs an earlier invocation timed (table.json), so a resumed study still shows them."""
    path = out / "table.json"
    if not path.is_file():
        return {}
    t = json.loads(path.read_text())
    return {n: r["wall_s"] for n, r in {"sft": t.get("sft", {}), **t.get("runs", {})}.items() if r.get("wall_s")}


def run_sft(args, extra: list[str], out: Path, walls: dict[str, float]) -> dict:
    folder = out / "sft"
    cmd = torchrun_cmd(args.config, args.nproc, [*extra, *sft_overrides(args, out)])
    if (folder / "export" / "config.json").is_file():
        print(f"sft: reusing {folder / 'export'} (delete it to redo the SFT)", flush=True)
        return {"status": "reused", "command": shlex.join(cmd), "wall_s": walls.get("sft"), "rc": 0}
    rc, wall = launch(cmd, folder, args.nproc)
    if rc != 0 or not (folder / "export" / "config.json").is_file():
        raise SystemExit(f"sft: failed (exit code {rc}) after {wall:.1f} s; every RL run needs it. "
                         f"End of {folder / 'log.txt'}:\n{log_tail(folder)}")
    print(f"sft: done in {wall:.1f} s ({args.sft_steps} steps)", flush=True)
    return {"status": "ran", "command": shlex.join(cmd), "wall_s": wall, "rc": rc}


def run_rl(args, extra: list[str], out: Path, force: bool, walls: dict[str, float]) -> dict[str, dict]:
    """Every (seed, algorithm) run, GRPO and VISD of a seed back to back: {run name: its record}."""
    todo = [(a, s) for s in args.seeds for a in ALGORITHMS]
    runs = {}
    for i, (algo, seed) in enumerate(todo, 1):
        name, folder = run_name(algo, seed), out / run_name(algo, seed)
        overrides = [*extra, *rl_overrides(args, out, algo, seed)]
        cmd = torchrun_cmd(args.config, args.nproc, overrides)
        rec = {"algorithm": algo, "seed": seed, "command": shlex.join(cmd), "rc": 0, "wall_s": None}
        expected = to_toml(load_config(args.config, overrides))
        if not force and rl_run_complete(folder, cmd, expected, args.rl_steps):
            rec.update(status="skipped", wall_s=walls.get(name))
            print(f"[{i}/{len(todo)}] {name}: complete, skipped", flush=True)
        else:
            rc, wall = launch(cmd, folder, args.nproc)
            ok = rc == 0 and rl_run_complete(folder, cmd, expected, args.rl_steps)
            rec.update(status="ok" if ok else "failed", rc=rc, wall_s=wall)
            print(f"[{i}/{len(todo)}] {name}: {'done' if ok else f'FAILED (exit code {rc})'} in {wall:.1f} s",
                  flush=True)
            if not ok:
                rec["log_tail"] = log_tail(folder)
                print(rec["log_tail"], flush=True)
        runs[name] = rec
    return runs


# ---------------------------------------------------------------------------- aggregation
def mean_std(values: list[float]) -> dict:
    """Mean and sample std (n − 1; None below 2 values) of the values."""
    return {"mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) >= 2 else None, "n": len(values)}


def val_by_step(rows: list[dict]) -> dict[int, dict[str, float]]:
    """{step: {val metric: value}} of a run's validation rows (those carrying val/n)."""
    return {r["step"]: {k: r[k] for k, _ in VAL_METRICS if k in r} for r in rows if "val/n" in r}


def train_means(rows: list[dict]) -> dict[str, float]:
    """Each training key's mean over the run's RL steps; teacher-dependent keys over the steps with λ > 0
    when the run has any (TEACHER_KEYS)."""
    rl = [r for r in rows if r.get("stage") == "rl"]
    taught = [r for r in rl if r.get("visd/lambda", 0.0) > 0]
    out = {}
    for key in TRAIN_KEYS:
        over = taught if taught and key.startswith(TEACHER_KEYS) else rl
        vals = [r[key] for r in over if key in r and math.isfinite(r[key])]
        if vals:
            out[key] = statistics.fmean(vals)
    return out


def aggregate(rows: dict[str, dict[int, list[dict]]], final_step: int) -> dict:
    """rows[algo][seed] = a run's metrics rows (failed runs left out) → per algorithm and val metric the
    mean ± std over seeds at each validation step (`val`), the paired final-step difference
    VISD − GRPO over seeds that have both (`final_diff`), and training-key means over seeds (`train`)."""
    out = {"val": {}, "train": {}, "final_diff": {}}
    for algo, by_seed in rows.items():
        vals = {seed: val_by_step(r) for seed, r in by_seed.items()}
        steps = sorted({s for v in vals.values() for s in v})
        out["val"][algo] = {}
        for key, _ in VAL_METRICS:
            per_step = {}
            for step in steps:
                per_seed = {seed: v[step][key] for seed, v in vals.items() if key in v.get(step, {})}
                if per_seed:
                    per_step[step] = {**mean_std(list(per_seed.values())), "per_seed": per_seed}
            if per_step:
                out["val"][algo][key] = per_step
        means = {seed: train_means(r) for seed, r in by_seed.items()}
        out["train"][algo] = {}
        for key in TRAIN_KEYS:
            per_seed = {seed: m[key] for seed, m in means.items() if key in m}
            if per_seed:
                out["train"][algo][key] = {**mean_std(list(per_seed.values())), "per_seed": per_seed}
    grpo, visd = out["val"].get("grpo", {}), out["val"].get("visd", {})
    for key, _ in VAL_METRICS:
        a = grpo.get(key, {}).get(final_step, {}).get("per_seed", {})
        b = visd.get(key, {}).get(final_step, {}).get("per_seed", {})
        diffs = {seed: b[seed] - a[seed] for seed in sorted(set(a) & set(b))}
        if diffs:
            out["final_diff"][key] = {**mean_std(list(diffs.values())), "per_seed": diffs}
    return out


# ---------------------------------------------------------------------------- hindsight diagnostic
def hindsight(run_dir: Path, step: int, n: int, sample_seed: int = 0) -> dict:
    """Student prompt vs teacher prompt on the same sampled completions of the final VISD policy
    (module docstring, 4). Imports torch here: the rest of the study runs in subprocesses."""
    import torch

    from visd_core.data.model_inputs import SampleError, collate, load_prompt, teacher_prompt_ids
    from visd_core.data.reader import JsonlReader
    from visd_core.eval.runner import load_policy
    from visd_core.judge.base import JudgeRequest
    from visd_core.judge.rule import rule_feedback
    from visd_core.model import completion_logits
    from visd_core.rewards.reward import score_group
    from visd_core.rollout import generate

    cfg = load_config(run_dir / "config.toml")
    policy = load_policy(str(run_dir / "checkpoints" / f"step_{step:06d}"), torch.device("cpu"))
    model, tok = policy.model, policy.tok
    k, temp = cfg.visd.top_k or 16, cfg.rollout.temperature
    records = JsonlReader(cfg.data.val_path, video_root=cfg.data.video_root or None, shuffle=False).records[:n]
    gen = torch.Generator().manual_seed(sample_seed)
    tokens = {"feedback": [], "no_feedback": []}        # per-token (overlap, Δ, top-1 differs) tensors
    skipped, examples = {}, []
    with torch.no_grad():
        for rec in records:
            try:
                s = load_prompt(rec, policy.data, tok)
            except SampleError as e:
                skipped[e.reason] = skipped.get(e.reason, 0) + 1
                continue
            roll = generate(model, collate([(s.prompt_ids, [], s)], tok.pad_id), cfg.rollout, group_size=1,
                            stop_ids=tok.eos_ids, pad_id=tok.pad_id, generator=gen)
            ids = roll.rows()[0]                    # stop token included, as the trainer replays it
            text = tok.decode([t for t in ids if t not in tok.eos_ids])
            res = score_group(rec, [text], s.frame_size, 1.0, policy.reward,
                              truncated=[bool(roll.truncated[0])])[0]
            feedback = rule_feedback(JudgeRequest.from_record(rec, text, res.diagnosis, s.frame_size))
            examples.append({"id": rec.id, "reward": res.total, "completion": text, "feedback": feedback})
            student = completion_logits(model, collate([(s.prompt_ids, ids, s)], tok.pad_id))
            for name, fb in (("feedback", feedback), ("no_feedback", None)):
                teacher = completion_logits(model, collate([(teacher_prompt_ids(s, tok, fb), ids, s)], tok.pad_id))
                tokens[name].append(compare_views(student.logits, teacher.logits, student.targets, k, temp))
    result = {"model": str(run_dir / "checkpoints" / f"step_{step:06d}"), "records": len(examples),
              "skipped": skipped, "top_k": k, "temperature": temp, "examples": examples}
    for name, parts in tokens.items():
        if parts:
            overlap, delta, differs = (torch.cat(x) for x in zip(*parts))
            result[name] = {"tokens": int(overlap.numel()), "topk_overlap": overlap.mean().item(),
                            "abs_delta": delta.abs().mean().item(), "delta": delta.mean().item(),
                            "top1_differs": differs.float().mean().item()}
    return result


def compare_views(student_NV, teacher_NV, tokens_N, k: int, temperature: float):
    """Per token: |TopK(student) ∩ TopK(teacher)| / K, Δ_t of visd eq. 4 (the trainer's kernel), and
    whether the two argmaxes differ."""
    import torch

    import kernels
    k = min(k, student_NV.shape[1])
    a, b = student_NV.topk(k, dim=1).indices, teacher_NV.topk(k, dim=1).indices
    overlap = (a[:, :, None] == b[:, None, :]).any(-1).sum(1).float() / k
    delta = kernels.topk_logratio(student_NV.float(), teacher_NV.float(), tokens_N, k=k, temperature=temperature)
    return overlap, delta, torch.ne(a[:, 0], b[:, 0])


# ---------------------------------------------------------------------------- outputs
def fmt(cell: dict | None, digits: int = 2) -> str:
    if not cell or cell.get("mean") is None:
        return "—"
    if cell["std"] is None:         # one seed: no spread to show
        return f"{cell['mean']:.{digits}f}"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def table_md(args, agg: dict, sft: dict, runs: dict, hs: dict | None) -> str:
    seeds = " ".join(map(str, args.seeds))
    lines = [f"# VISD vs GRPO — {args.config}", "",
             f"SFT {args.sft_steps} steps, then RL {args.rl_steps} steps per run from the same SFT export; "
             f"seeds {seeds}; "
             f"validation on the first {args.eval_samples} records of data.val_path (greedy), every {args.eval_every} "
             "RL steps. Cells: mean ± sample std over seeds (the mean alone with one seed; — not measured).", ""]
    failed = [f"{n} (exit code {r['rc']})" for n, r in runs.items() if r["status"] == "failed"]
    if failed:
        lines += [f"**Failed runs, left out of every table:** {', '.join(failed)} (see their log.txt).", ""]
    lines += ["## Runs", "", "| run | status | wall s |", "|---|---|---|"]
    lines += [f"| {n} | {r['status']} | {'—' if r['wall_s'] is None else round(r['wall_s'])} |"
              for n, r in {"sft": sft, **runs}.items()]
    lines += ["", "## Validation", "", "| step | algorithm | seeds | " + " | ".join(l for _, l in VAL_METRICS) + " |",
              "|---" * (3 + len(VAL_METRICS)) + "|"]
    steps = sorted({s for a in agg["val"].values() for m in a.values() for s in m})
    for step in steps:
        for algo in ALGORITHMS:
            cells = [agg["val"].get(algo, {}).get(k, {}).get(step) for k, _ in VAL_METRICS]
            n = max((c["n"] for c in cells if c), default=0)
            lines.append(f"| {step} | {algo.upper()} | {n} | " + " | ".join(fmt(c) for c in cells) + " |")
    lines += ["", f"## Final step ({args.rl_steps}): VISD − GRPO, paired by seed", "",
              "| metric | GRPO | VISD | VISD − GRPO | pairs |", "|---|---|---|---|---|"]
    for key, label in VAL_METRICS:
        d = agg["final_diff"].get(key)
        g, v = (agg["val"].get(a, {}).get(key, {}).get(args.rl_steps) for a in ALGORITHMS)
        lines.append(f"| {label} | {fmt(g)} | {fmt(v)} | {fmt(d)} | {d['n'] if d else 0} |")
    lines += ["", "## Training diagnostics (mean over RL steps, then mean ± std over seeds)", "",
              "delta/* and token_weight/* of a run with λ > 0 steps are averaged over those steps only "
              "(the teacher is off after λ reaches 0).", "", "| key | GRPO | VISD |", "|---|---|---|"]
    for key in TRAIN_KEYS:
        cells = [agg["train"].get(a, {}).get(key) for a in ALGORITHMS]
        if any(cells):
            lines.append(f"| {key} | {fmt(cells[0], 4)} | {fmt(cells[1], 4)} |")
    lines += ["", "## Hindsight diagnostic", ""] + hindsight_md(hs)
    return "\n".join(lines) + "\n"


def hindsight_md(hs: dict | None) -> list[str]:
    if hs is None:
        return ["Off (--hindsight 0)."]
    if "error" in hs:
        return [f"Not computed: {hs['error']}"]
    lines = [f"Model: `{hs['model']}` (the same weights under both prompts: this isolates the hindsight "
             "context; the trainer's teacher is an EMA of these weights). One completion sampled per record "
             f"(T = {hs['temperature']}), rule-judge feedback; {hs['records']} records"
             + (f", skipped {hs['skipped']}" if hs["skipped"] else "") + ". Token means over the completions.", ""]
    if not any(name in hs for name in ("feedback", "no_feedback")):
        return lines + ["No record gave a usable completion, so nothing was measured."]
    k = hs["top_k"]
    lines += [f"| teacher prompt | tokens | top-{k} overlap | mean \\|Δ\\| (eq. 4, on TopK ∪ {{y}}) | mean Δ | "
              "top-1 differs |", "|---|---|---|---|---|---|"]
    for name, label in (("feedback", "hindsight block + judge feedback"),
                        ("no_feedback", "hindsight block, no feedback")):
        if name in hs:
            r = hs[name]
            lines.append(f"| {label} | {r['tokens']} | {r['topk_overlap']:.3f} | {r['abs_delta']:.4f} | "
                         f"{r['delta']:+.4f} | {100 * r['top1_differs']:.1f}% |")
    return lines


def plot_curves(agg: dict, rows: dict[str, dict[int, list[dict]]], path: Path) -> None:
    """One panel per plotted val metric and one of the smoothed training reward: mean line, ±std band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = dict(VAL_METRICS)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, key in zip(axes.flat, PLOTTED):
        for algo in ALGORITHMS:
            cells = agg["val"].get(algo, {}).get(key, {})
            if cells:
                x = sorted(cells)
                m = np.array([cells[s]["mean"] for s in x])
                sd = np.array([cells[s]["std"] or 0.0 for s in x])
                ax.plot(x, m, marker="o", label=algo.upper())
                ax.fill_between(x, m - sd, m + sd, alpha=0.2)
        ax.set(title=labels[key], xlabel="RL step")
        if ax.lines:
            ax.legend()
        else:           # e.g. spatial mIoU when no validation record asks where
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    ax = axes.flat[len(PLOTTED)]
    for algo in ALGORITHMS:
        rewards = [[x["reward/total"] for x in r if x.get("stage") == "rl"] for r in rows.get(algo, {}).values()]
        n = min((len(r) for r in rewards), default=0)
        if n:
            w = max(1, n // 10)             # a tenth of the run: the noise of a few rollouts a step smoothed out
            c = np.stack([np.convolve(r[:n], np.ones(w) / w, mode="valid") for r in rewards])
            x = np.arange(w, n + 1)         # each mean plotted at the last step of its window
            ax.plot(x, c.mean(0), label=algo.upper())
            ax.fill_between(x, c.mean(0) - c.std(0), c.mean(0) + c.std(0), alpha=0.2)
    ax.set(title="training reward/total (moving mean)", xlabel="RL step")
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def jsonable(x):
    """int dict keys (steps, seeds) as strings, so table.json round-trips through json."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [jsonable(v) for v in x]
    return x


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, extra = parse_args(argv)
    except ValueError as e:
        print(f"visd_vs_grpo.py: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    walls = previous_walls(out)
    sft = run_sft(args, extra, out, walls)
    runs = run_rl(args, extra, out, sft["status"] == "ran", walls)     # a new SFT model makes every RL run stale
    rows = {a: {r["seed"]: read_rows(out / n) for n, r in runs.items()
                if r["algorithm"] == a and r["status"] != "failed"} for a in ALGORITHMS}
    agg = aggregate(rows, args.rl_steps)
    hs = None
    if args.hindsight:
        first = run_name("visd", args.seeds[0])
        if runs[first]["status"] == "failed":
            hs = {"error": f"{first} failed, so there is no final VISD model to examine"}
        else:
            t = time.perf_counter()
            try:
                hs = hindsight(out / first, args.rl_steps, args.hindsight)
            except Exception as e:      # a diagnostic must not lose the study's tables
                hs = {"error": f"{type(e).__name__}: {e}"}
            hs["wall_s"] = time.perf_counter() - t
            print(f"hindsight: {hs.get('records', 0)} records in {hs['wall_s']:.1f} s", flush=True)
    md = table_md(args, agg, sft, runs, hs)
    (out / "table.md").write_text(md)
    rl_cfg = load_config(args.config, [*extra, *rl_overrides(args, out, "visd", args.seeds[0])])
    (out / "table.json").write_text(json.dumps(jsonable({
        "command": shlex.join([sys.executable, str(Path(__file__)), *argv]), "argv": argv,
        "settings": {"config": args.config, "seeds": args.seeds, "sft_steps": args.sft_steps,
                     "rl_steps": args.rl_steps, "eval_every": args.eval_every, "eval_samples": args.eval_samples,
                     "nproc": args.nproc, "hindsight": args.hindsight, "extra_overrides": extra},
        "config": to_toml(rl_cfg), "sft": sft, "runs": runs, **agg, "hindsight": hs,
        "wall_s": time.perf_counter() - t0}), indent=1) + "\n")
    plot_curves(agg, rows, out / "curves.png")
    print(md)
    print(f"wrote {out / 'table.md'}, {out / 'table.json'}, {out / 'curves.png'} "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    return 1 if any(r["status"] == "failed" for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
