"""Ahead-of-time compile of every Triton kernel in kernels/ for sm_80 and sm_90, without a GPU.

Run by tests/kernels/test_triton_aot.py in a fresh process: the test session sets TRITON_INTERPRET=1
before kernels/ is imported, and @triton.jit then builds interpreter objects that cannot be compiled.
Here triton.compile(ASTSource, target=GPUTarget("cuda", arch, 32)) runs the real pipeline
(TTIR -> TTGIR -> LLVM -> PTX -> Triton's bundled ptxas), once per kernel x logits dtype x constexpr
mode the ops launch with x autotune config. Prints one JSON object on stdout:
{"records": [{kernel, arch, dtype, mode, BLOCK_V, num_warps, registers, spill_stores, spill_loads,
stack_frame, shared, seconds, error}], "uncovered": [...], "seconds": total} or {"skip": reason}.

    python tests/kernels/_aot_compile.py [--archs 80,90] [--jobs 2] [--full] [--table]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # also in the spawned compile processes, which import this file by path
    sys.path.insert(0, str(ROOT))
ARCHS = (80, 90)  # A100, H100/H200
# Shared memory one block may use (cudaDevAttrMaxSharedMemoryPerBlockOptin): 163 KB on sm_80, 227 KB on sm_90.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
VOCAB = 151_936   # Qwen2.5-VL's tokenizer vocab; the 7B checkpoint pads to 152,064 — both multiples of 16,
                  # so they specialize the same way
N_TOKENS = 4099   # a token count with no divisibility, as the runtime sees most of the time
# Teacher top-K widths the code launches: 0 (configs/ablations/sampled_token.toml), 16 (visd.top_k,
# paper Table 8), 64 (visd_core.rollout.NUCLEUS_CANDIDATES, the sampler's candidate set). The test
# checks these against the code.
TOPK_VALUES = (0, 16, 64)
TRAINER_TOPK = 16


def specialize(value):
    """(type, divisible by 16) as Triton's launcher specializes an argument (runtime/jit.py:
    native_specialize_impl): data pointers from the torch caching allocator are 16-byte aligned, an int
    equal to 1 becomes a constexpr, ints divisible by 16 get tt.divisibility, floats are fp32."""
    if isinstance(value, str):  # a pointer, written as its element type
        return "*" + value, True
    if isinstance(value, bool):
        return "u1", False
    if isinstance(value, int):
        if value == 1:
            return "constexpr", False
        return ("i32" if -2**31 <= value < 2**31 else "i64"), value % 16 == 0
    return "fp32", False


def source(kernel, args: dict, constexprs: dict):
    """ASTSource for `kernel` with example runtime `args` (pointers as type strings) and constexprs."""
    import triton

    signature, attrs, consts = {}, {}, dict(constexprs)
    for i, name in enumerate(kernel.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
            continue
        ty, divisible = specialize(args[name])
        signature[name] = ty
        if ty == "constexpr":
            consts[name] = args[name]
        elif divisible:
            attrs[(i, )] = [["tt.divisibility", 16]]
    return triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=consts, attrs=attrs)


# ---- the matrix: (kernel, args, constexpr modes, autotune configs) per module ----------------------
# Every kernel x {sm_80, sm_90} x {fp32, bf16} logits x every constexpr mode the code launches. The whole
# cross product with every autotune config (--full) takes ~7 min of one core here, 70% of it
# the teacher top-K with K > 0 (3-9 s per compile, in TTGIR/LLVM: tl.topk's sorting network). By default
# (164 compiles, ~65 s of CPU here):
#   - token_logprobs, teacher_topk K = 0, and the policy loss in the VISD trainer's mode (Δ from the
#     top-K support, entropy, gradient): every autotune config;
#   - teacher_topk K = 16, 64: one config, 4096/16 warps for bf16 (the recipes' logits; 8 values per
#     thread, the most of the list, which the spill-free configs cap there) and 1024/4 for fp32;
#   - the policy loss's other modes (GRPO's no-Δ, sampled-token Δ, a Δ tensor, no entropy, no gradient)
#     do a subset of the VISD mode's work: one config, 8192/8 warps (32 values per thread).

def _row_args(**extra) -> dict:
    return dict(row_stride=VOCAB, V=VOCAB, inv_t=1.0, **extra)


def _pick(configs, *pairs):
    """The autotune configs with these (BLOCK_V, num_warps), in the order given."""
    chosen = [c for pair in pairs for c in configs if (c.kwargs["BLOCK_V"], c.num_warps) == pair]
    assert len(chosen) == len(pairs), f"autotune configs changed: {pairs} not all in the list"
    return chosen


def token_logprobs_jobs(dtype: str, full: bool):
    from kernels import token_logprobs_triton as m

    fwd = _row_args(logits_ptr=dtype, tokens_ptr="i64", logprobs_ptr="fp32", max_ptr="fp32", log_sum_ptr="fp32",
                    entropy_ptr="fp32")
    bwd = _row_args(logits_ptr=dtype, tokens_ptr="i64", max_ptr="fp32", log_sum_ptr="fp32",
                    grad_logprobs_ptr="fp32", out_ptr=dtype)
    # WITH_ENTROPY=False: the SFT loss and the sampler; True: token_logprobs(return_entropy=True)
    for entropy in (False, True):
        yield ("token_logprobs.forward", m._forward_kernel, fwd, dict(WITH_ENTROPY=entropy), f"entropy={int(entropy)}",
               m._forward_tuned.configs)
    yield "token_logprobs.backward", m._backward_kernel, bwd, {}, "-", m._backward_tuned.configs


def teacher_topk_jobs(dtype: str, full: bool):
    import triton
    from kernels import teacher_topk_triton as m

    configs = m._TUNED.configs
    for k in TOPK_VALUES:
        args = _row_args(logits_ptr=dtype, tokens_ptr="i64", ids_ptr="i64", topk_logits_ptr="fp32",
                         token_logits_ptr="fp32", logprob_ptr="fp32", K=k)
        modes = dict(K_PAD=triton.next_power_of_2(max(k, 1)), SAMPLED_TOKEN=k == 0)  # as teacher_topk_forward
        if full or k == 0:
            chosen = configs
        else:
            chosen = _pick(configs, (4096, 16) if dtype == "bf16" else (1024, 4))
        yield "teacher_topk", m._teacher_topk_kernel, args, modes, f"K={k}", chosen


def policy_loss_jobs(dtype: str, full: bool):
    import triton
    from kernels import policy_loss_triton as m

    def args(k):
        return _row_args(logits_ptr=dtype, out_ptr=dtype, out_stride=VOCAB, tokens_ptr="i64", old_ptr="fp32",
                         adv_ptr="fp32", weight_ptr="fp32", delta_ptr="fp32", ids_ptr="i64", teacher_ptr="fp32",
                         teacher_y_ptr="fp32", teacher_logprob_ptr="fp32", stats_ptr="fp32", N=N_TOKENS, K=k,
                         lam=0.5, w_lo=0.8, w_hi=1.2, r_lo=0.8, r_hi=1.2)

    names = {m.DELTA_NONE: "none", m.DELTA_TENSOR: "tensor", m.DELTA_SAMPLED_TOKEN: "sampled",
             m.DELTA_SUPPORT: "support"}
    # What the trainer launches (visd_core/trainer.py: with_entropy=True, inplace_backward=True, hence
    # COMPUTE_GRAD): GRPO or λ = 0 -> DELTA_NONE; top_k = 16 -> DELTA_SUPPORT; top_k = 0 -> DELTA_SAMPLED_TOKEN.
    trainer = [(m.DELTA_SUPPORT, TRAINER_TOPK), (m.DELTA_NONE, 0), (m.DELTA_SAMPLED_TOKEN, 0)]
    cases = [(mode, k, True, True) for mode, k in trainer]
    if full:  # every other combination the public API can launch
        cases += [(mode, k, ent, grad) for mode, k in trainer + [(m.DELTA_TENSOR, 0)] for ent in (False, True)
                  for grad in (False, True) if (mode, k, ent, grad) not in cases]
    else:  # each switch once, on the heaviest Δ mode; and the Δ tensor
        cases += [(m.DELTA_SUPPORT, TRAINER_TOPK, False, True), (m.DELTA_SUPPORT, TRAINER_TOPK, True, False),
                  (m.DELTA_SUPPORT, TRAINER_TOPK, False, False), (m.DELTA_TENSOR, 0, True, True)]
    configs = m._TUNED.configs
    for i, (mode, k, ent, grad) in enumerate(cases):
        flags = dict(DELTA_MODE=mode, K_PAD=triton.next_power_of_2(max(k, 1)), WITH_ENTROPY=ent, COMPUTE_GRAD=grad)
        label = f"delta={names[mode]} K={k} entropy={int(ent)} grad={int(grad)}"
        chosen = configs if full or i == 0 else _pick(configs, (8192, 8))
        yield "policy_loss", m._policy_loss_kernel, args(k), flags, label, chosen


JOB_LISTS = (teacher_topk_jobs, policy_loss_jobs, token_logprobs_jobs)  # slowest first: the pool ends together
DTYPES = ("fp32", "bf16")  # logits: fp32 (model.dtype = "float32", tests) and bf16 (the 7B recipes)


def covered_kernels() -> set[str]:
    return {f"{kernel.__module__}.{kernel.__name__}" for jobs in JOB_LISTS for _, kernel, *_ in jobs("fp32", True)}


def entry_kernels() -> set[str]:
    """Every launchable @triton.jit of kernels/: a module-level JITFunction whose name ends in `_kernel`
    (helpers such as row_logsumexp are compiled inside them). A module that fails to import is listed as
    `module (import error: ...)`, so a new kernel file cannot slip past the matrix."""
    import importlib

    import triton

    found = set()
    for path in sorted((ROOT / "kernels").glob("*.py")):
        if "@triton.jit" not in path.read_text():
            continue
        try:
            module = importlib.import_module(f"kernels.{path.stem}")
        except Exception as err:  # noqa: BLE001 - reported, the test fails on it
            found.add(f"kernels.{path.stem} (import error: {type(err).__name__}: {err})")
            continue
        for name, obj in vars(module).items():
            if isinstance(obj, triton.runtime.JITFunction) and name.endswith("_kernel") \
                    and obj.__module__ == module.__name__:
                found.add(f"{module.__name__}.{obj.__name__}")
    return found


# ---- compiling ----------------------------------------------------------------------------------

_PTXAS_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_REGS = re.compile(r"Used (\d+) registers")


def parse_ptxas(log: str) -> dict:
    """ptxas -v's resource lines (one kernel per PTX here: Triton inlines every helper)."""
    props = [tuple(map(int, m)) for m in _PTXAS_PROPS.findall(log)]
    regs = [int(r) for r in _PTXAS_REGS.findall(log)]
    if not props or not regs:
        return {"error": f"no ptxas -v resource lines in the compile log: {log[-400:]!r}"}
    return dict(registers=max(regs), stack_frame=max(p[0] for p in props),
                spill_stores=sum(p[1] for p in props), spill_loads=sum(p[2] for p in props))


def compile_one(job: tuple) -> dict:
    """job = (name of a *_jobs function, its `full` flag, arch, dtype, index of the case, of the config)."""
    import triton
    from triton.backends.compiler import GPUTarget

    jobs_fn, full, arch, dtype, case_index, config_index = job
    name, kernel, args, modes, label, configs = list(globals()[jobs_fn](dtype, full))[case_index]
    config = configs[config_index]
    record = dict(kernel=name, arch=f"sm_{arch}", dtype=dtype, mode=label, BLOCK_V=config.kwargs["BLOCK_V"],
                  num_warps=config.num_warps)
    options = {k: v for k, v in config.all_kwargs().items() if k not in config.kwargs}
    t0 = time.perf_counter()
    log = io.StringIO()
    try:
        # TRITON_DUMP_PTXAS_LOG (set by main) makes make_cubin print ptxas -v's report: the very ptxas run
        # of the compile, not a second one with guessed flags.
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(source(kernel, args, {**modes, **config.kwargs}),
                                      target=GPUTarget("cuda", arch, 32), options=options)
        record.update(parse_ptxas(log.getvalue()), shared=compiled.metadata.shared)
    except Exception as err:  # a compile error is a result to report, not a crash of the whole matrix
        record["error"] = f"{type(err).__name__}: {str(err)[:2000]}"
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def all_jobs(archs, full: bool) -> list[tuple]:
    return [(jobs_fn.__name__, full, arch, dtype, i, j) for jobs_fn in JOB_LISTS for arch in archs for dtype in DTYPES
            for i, case in enumerate(jobs_fn(dtype, full)) for j in range(len(case[5]))]


def summary(records: list[dict]) -> list[str]:
    """One line per kernel x arch x dtype x mode: the register range over the autotune configs, the
    spills (bytes stored, and at which BLOCK_V/num_warps), the largest shared-memory use."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["kernel"], r["arch"], r["dtype"], r["mode"]), []).append(r)
    lines = [f"{'kernel':24} {'arch':6} {'dtype':5} {'mode':40} {'configs':>7} {'regs':>8} {'smem':>6}  spills"]
    for (kernel, arch, dtype, mode), rs in sorted(groups.items()):
        ok = [r for r in rs if "error" not in r]
        regs = f"{min(r['registers'] for r in ok)}-{max(r['registers'] for r in ok)}" if ok else "-"
        smem = max((r["shared"] for r in ok), default=0)
        spills = ", ".join(f"{r['spill_stores']}B@{r['BLOCK_V']}/{r['num_warps']}w" for r in ok if r["spill_stores"])
        errors = len(rs) - len(ok)
        lines.append(f"{kernel:24} {arch:6} {dtype:5} {mode:40} {len(rs):7} {regs:>8} {smem:6}  {spills or '0'}"
                     + (f"  ({errors} COMPILE ERRORS)" if errors else ""))
    return lines


def no_backend_reason() -> str | None:
    try:
        from triton.backends import backends
    except Exception as err:  # noqa: BLE001 - any import failure means no AOT compile here
        return f"triton.backends does not import: {err}"
    if "nvidia" not in backends:
        return f"the installed Triton has no NVIDIA backend (backends: {sorted(backends)})"
    from triton.backends.nvidia.compiler import get_ptxas
    for arch in ARCHS:
        path = get_ptxas(arch).path
        if not os.access(path, os.X_OK):
            return f"Triton's ptxas for sm_{arch} is missing at {path}"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(map(str, ARCHS)))
    parser.add_argument("--jobs", type=int, default=2, help="compile processes")
    parser.add_argument("--full", action="store_true", help="every public-API mode at every autotune config")
    parser.add_argument("--table", action="store_true", help="a readable summary instead of JSON")
    opts = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print(json.dumps({"error": "TRITON_INTERPRET is set: @triton.jit would build interpreter objects"}))
        return 2
    reason = no_backend_reason()
    if reason:
        print(json.dumps({"skip": reason}))
        return 0
    t0 = time.perf_counter()
    archs = [int(a) for a in opts.archs.split(",")]
    jobs = all_jobs(archs, opts.full)
    with tempfile.TemporaryDirectory(prefix="visd-aot-") as cache:
        # A private cache: a cache hit would skip ptxas (and its -v report), and nothing leaks into ~/.triton.
        # TRITON_DUMP_PTXAS_LOG makes make_cubin print ptxas -v's report (read by compile_one).
        os.environ.update(TRITON_CACHE_DIR=cache, TRITON_DUMP_PTXAS_LOG="1")
        if opts.jobs > 1:  # spawn, not fork: a forked LLVM with live threads can deadlock
            with ProcessPoolExecutor(opts.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                records = list(pool.map(compile_one, jobs))
        else:
            records = [compile_one(j) for j in jobs]
    for r in records:
        if "error" not in r and r["shared"] > SHARED_LIMIT[int(r["arch"][3:])]:
            r["error"] = f"{r['shared']} bytes of shared memory > {SHARED_LIMIT[int(r['arch'][3:])]}"
    report = {"records": records, "uncovered": sorted(entry_kernels() - covered_kernels()),
              "seconds": round(time.perf_counter() - t0, 1)}
    if opts.table:
        print("\n".join(summary(records) + [f"uncovered: {report['uncovered']}", f"{report['seconds']} s"]))
    else:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
