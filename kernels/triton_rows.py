"""Triton building blocks over one vocabulary row, shared by the token-logprob and policy-loss
kernels: the online logsumexp sweep and the gradient sweep. Rows are walked in BLOCK_V tiles with
out-of-range columns masked to −inf (V = 151,936 is not a multiple of any tile), fp32 accumulation.
"""

import triton
import triton.language as tl

INTERPRETED = bool(triton.knobs.runtime.interpret)  # decided when the kernels below are decorated
# Tiles under the interpreter (where each tile op is a NumPy call): row sweeps use 2048 (a 151,936 row is
# 75 tiles plus a masked tail); the top-K uses 512, because tl.topk's cost there grows with the tile
# and small tiles let a 1,423-wide test cover the multi-tile merge.
INTERPRETER_BLOCK_V = 2048
INTERPRETER_TOPK_BLOCK_V = 512


def autotune_configs(blocks: tuple[int, ...], warps: tuple[int, ...]) -> list[triton.Config]:
    """H100 candidates: a row is one program, so wide tiles and many warps keep HBM busy."""
    return [triton.Config({"BLOCK_V": b}, num_warps=w) for b in blocks for w in warps]


@triton.jit
def row_logsumexp(row_ptr, V, inv_t, BLOCK_V: tl.constexpr, WITH_ENTROPY: tl.constexpr):
    """(max of z/T, log Σ exp(z/T − max), entropy of softmax(z/T)) of one row, in one streaming pass.
    logsumexp stays split in two: log-probabilities (z/T − max) − log_sum are then as accurate as
    torch's log_softmax, whereas one fp32 max + log_sum would lose an ulp of |z/T|."""
    m = float("-inf")  # running max of z/T
    s = 0.0            # Σ exp(z/T − m)
    w = 0.0            # Σ exp(z/T − m)·(z/T − m): entropy = log s − w/s
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(row_ptr + cols, mask=cols < V, other=float("-inf")).to(tl.float32) * inv_t
        m_new = tl.maximum(m, tl.max(x, axis=0))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # all masked so far: sums stay 0, no inf − inf
        rescale = tl.exp(m - shift)
        e = tl.exp(x - shift)
        if WITH_ENTROPY:  # the wheres keep masked entries (e = 0, x = −inf) from making 0·inf = NaN
            w = rescale * (w - tl.where(s > 0, shift - m, 0.0) * s)  # re-center the moment on the new max
            w += tl.sum(tl.where(e > 0, x - shift, 0.0) * e, axis=0)
        s = s * rescale + tl.sum(e, axis=0)
        m = m_new
    log_s = tl.log(s)
    entropy = 0.0
    if WITH_ENTROPY:
        entropy = log_s - w / s
    return m, log_s, entropy


@triton.jit
def cast_for_store(x, out_ptr):
    """fp32 -> the output dtype, rounding to nearest even. bf16 is rounded by hand because the
    interpreter's fp32 -> bf16 cast truncates (GPUs round): this way every backend rounds the same."""
    if out_ptr.dtype.element_ty == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(out_ptr.dtype.element_ty)


@triton.jit
def write_logprob_grad(row_ptr, out_ptr, V, y, inv_t, row_max, log_sum, coef, BLOCK_V: tl.constexpr):
    """out = coef·(onehot(y) − softmax(z/T))/T, tile by tile; out may alias the row (each tile is read
    before it is written)."""
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < V
        x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32) * inv_t
        grad = coef * inv_t * (tl.where(cols == y, 1.0, 0.0) - tl.exp((x - row_max) - log_sum))
        tl.store(out_ptr + cols, cast_for_store(grad, out_ptr), mask=mask)


@triton.jit
def write_zeros(out_ptr, V, BLOCK_V: tl.constexpr):
    """A zero gradient row: masked, clipped and zero-advantage tokens skip the softmax sweep."""
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        tl.store(out_ptr + cols, tl.zeros([BLOCK_V], dtype=tl.float32).to(out_ptr.dtype.element_ty), mask=cols < V)
