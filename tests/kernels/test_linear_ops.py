"""The fused-linear ops (kernels/linear_ops.py: lm_head's matmul fused in, chunked over tokens) against
the logits ops on hidden @ W.T and against the fp64 reference: values and gradients w.r.t. hidden and
weight, in fp32 and bf16, with chunk boundaries inside sequences, ragged sequences, masked tokens,
every Δ_t source, λ = 0 and λ > 0, tied weights, and a check that no [N, V] tensor is ever made.

The logits every comparison starts from are lm_head's, chunk by chunk, in the input dtype (what the
op computes: `chunked_logits`): a BLAS may round one logit differently in a [C, H] @ [H, V] product
than in the whole [N, H] @ [H, V] one, and in bf16 one ulp of a logit (2^-8 |z|, 0.04 at |z| = 10)
moves softmax by 4% — an error lm_head's bf16 output has either way, not one these ops add.

Tolerances. Against the fp64 reference (the reference on those logits upcast, its matmul gradients
dlogits @ W and dlogits.T @ hidden in fp64): Cut Cross-Entropy's criterion
(kernel_test_cases.assert_cce), |impl − ref64| ≤ |torch-same-dtype − ref64| + tol, torch-same-dtype
being the reference on the same logits differentiated by autograd through the chunked matmul in the
input dtype; tol is 16 fp32 ulps × (1 + max|z/T|) × the size the error is relative to: |ref| + 1 for
log-space values, and |dlogits| @ |W| (resp. |dlogits|.T @ |hidden|) for the two matmul gradients —
plus one output ulp (2^-8 |ref|) for bf16 outputs, and for the bf16 matmul gradients one bf16 ulp of
each dL/dlogits entry carried through (2^-8 × the absolute matmul: torch stores that gradient in bf16
too). Against the logits op on the same logits (the same row kernels; what differs is the fp64 sum of
chunk losses and grad_W's accumulation: fp32 addmm_ here, autograd's sum of per-chunk products in the
weight's dtype there): fp32 rtol 1e-5 with atol 1e-6 × the tensor's largest entry; bf16 rtol 2^-6
with atol 2^-8 × the largest entry (a few bf16 ulps of the baseline's own accumulation). The teacher
summary is bitwise that of kernels.teacher_topk on the same logits.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import kernels
from kernels import linear_ops, reference
from kernel_test_cases import assert_cce, log_space, make_tokens, policy_inputs, ragged_seq_lens

DTYPES = [torch.float32, torch.bfloat16]
SAME_DTYPE_TOL = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (2.0**-6, 2.0**-8)}  # (rtol, atol / max|ref|)


@pytest.fixture(autouse=True)
def cpp(backend):
    backend("cpp")


def make_problem(n: int, hidden: int, vocab: int, gen: torch.Generator):
    """fp32 (hidden [n, H], weight [V, H], teacher hidden [n, H]): logits z = hidden @ W.T with std ~3,
    like kernel_test_cases' "normal" logits; the teacher is a perturbed student."""
    h = torch.randn(n, hidden, generator=gen)
    w = torch.randn(vocab, hidden, generator=gen) * (3 / hidden**0.5)
    teacher_h = h + 0.5 * torch.randn(n, hidden, generator=gen)
    return h, w, teacher_h


def chunked_logits(h: torch.Tensor, w: torch.Tensor, chunk: int) -> torch.Tensor:
    """lm_head's logits as the ops make them: hidden_CH @ W.T per chunk, in the input dtype; differentiable."""
    return torch.cat([h[i:i + chunk] @ w.T for i in range(0, h.shape[0], chunk)])


def assert_same(name: str, impl: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    rtol, atol = SAME_DTYPE_TOL[dtype]
    ref = ref.float()
    torch.testing.assert_close(impl.float(), ref, rtol=rtol, atol=atol * float(ref.abs().max().clamp_min(1e-30)),
                               msg=lambda m: f"{name}: {m}")


def matmul_grads_cce(impl, ref64, base, dlogits64, h64, w64, scale, dtype) -> None:
    """CCE on dL/dhidden and dL/dW, the error relative to the absolute matmul |dlogits| @ |W|; in bf16,
    dL/dlogits itself is stored in bf16 (as torch's is), so one bf16 ulp of every dlogits entry is
    carried through the matmul: 2^-8 × that absolute matmul on top."""
    (gh, gw), (gh64, gw64), (gh_b, gw_b) = impl, ref64, base
    ulp = 2.0**-8 if dtype == torch.bfloat16 else 0.0
    for name, g, g64, g_b, size in (("grad_hidden", gh, gh64, gh_b, dlogits64.abs() @ w64.abs()),
                                    ("grad_weight", gw, gw64, gw_b, dlogits64.abs().T @ h64.abs())):
        assert_cce(name, g, g64, g_b, scale, size + g64.abs(), out_dtype=dtype, extra=ulp * size)


# ---- the VISD policy loss -------------------------------------------------------------------------

def support_for(source: str, teacher_logits: torch.Tensor, tokens, temperature, topk_fn):
    return topk_fn(teacher_logits, tokens, int(source[1:]), temperature)


def run_linear(h, w, tokens, old, adv, delta, seq_lens, **kw):
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    loss, stats = kernels.linear_visd_policy_loss(h, w, tokens, old, adv, delta, seq_lens, return_stats=True, **kw)
    loss.backward()
    return loss.detach(), (h.grad, w.grad), stats


def run_logits(fn, h, w, chunk, *args, **kw):
    """(loss, (dL/dh, dL/dW), stats) of a logits op on the chunked logits, autograd through the matmul."""
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    loss, stats = fn(chunked_logits(h, w, chunk), *args, return_stats=True, **kw)
    loss.backward()
    return loss.detach(), (h.grad, w.grad), stats


def run_truth(fn, h, w, chunk, *args, **kw):
    """(loss, (dL/dh, dL/dW), stats, dL/dlogits): fn on the chunked logits upcast to fp64, and the matmul's
    chain rule in fp64."""
    z64 = chunked_logits(h, w, chunk).double().requires_grad_()
    out = fn(z64, *args, **kw)
    loss, stats = out if isinstance(out, tuple) else (out, None)
    loss.backward()
    g = z64.grad
    return loss.detach(), (g @ w.double(), g.T @ h.double()), stats, g


def check_linear_policy_loss(n, vocab, dtype, source, lam, *, hidden=16, chunk_tokens=3, temperature=0.8,
                             aggregation="seq_mean_token_mean", masked=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h32, w32, th32 = make_problem(n, hidden, vocab, gen)
    h, w = h32.to(dtype), w32.to(dtype)
    h64, w64 = h.double(), w.double()  # the truth of the same (rounded) inputs
    teacher = th32.to(dtype) @ w.T  # the teacher's logits are an input: the same for every path
    teacher64 = teacher.double()
    tokens = make_tokens(teacher64, gen)
    seq_lens = ragged_seq_lens(n)
    old, adv, delta_tensor = policy_inputs(chunked_logits(h, w, chunk_tokens).double(), tokens, seq_lens, gen,
                                           temperature)
    mask = (torch.arange(n) % 4 != 1).long() if masked else None
    kw = dict(lam=lam, temperature=temperature, aggregation=aggregation, loss_mask=mask, with_entropy=True)

    def delta_for(topk_fn, teacher_logits):
        if source == "none":
            return None
        return delta_tensor if source == "tensor" else support_for(source, teacher_logits, tokens, temperature, topk_fn)

    support_impl = delta_for(kernels.teacher_topk, teacher)
    loss, grads, stats = run_linear(h, w, tokens, old, adv, support_impl, seq_lens, chunk_tokens=chunk_tokens, **kw)
    # the same row kernels on the whole logits: agreement up to the chunked matmul's rounding
    loss_op, grads_op, stats_op = run_logits(kernels.visd_policy_loss, h, w, chunk_tokens, tokens, old, adv,
                                             support_impl, seq_lens, **kw)
    assert_same("loss vs logits op", loss, loss_op, dtype)
    for name, g, g_op in zip(("grad_hidden", "grad_weight"), grads, grads_op):
        assert g.dtype == dtype and g.shape == g_op.shape
        assert_same(f"{name} vs logits op", g, g_op, dtype)
    for field in ("logprobs", "delta", "token_weight", "advantages_hat", "ratio", "token_loss", "entropy"):
        assert_same(f"{field} vs logits op", getattr(stats, field), getattr(stats_op, field), dtype)
    # the fp64 truth, by CCE's criterion against torch in the same dtype
    loss64, grads64, stats64, dlogits64 = run_truth(reference.visd_policy_loss, h, w, chunk_tokens, tokens, old, adv,
                                                    delta_for(reference.teacher_topk, teacher64), seq_lens,
                                                    return_stats=True, **kw)
    loss_b, grads_b, stats_b = run_logits(reference.visd_policy_loss, h, w, chunk_tokens, tokens, old, adv,
                                          delta_for(reference.teacher_topk, teacher), seq_lens, **kw)
    z64 = torch.cat([h64 @ w64.T, teacher64], dim=1) / temperature
    scale = float(z64.abs().max())
    loss_size = (stats64.loss_weights * stats64.token_loss).abs().sum() + loss64.abs()
    assert_cce("loss", loss, loss64, loss_b, scale, loss_size)
    matmul_grads_cce(grads, grads64, grads_b, dlogits64, h64, w64, scale, dtype)
    for field in ("logprobs", "delta", "token_weight", "advantages_hat", "ratio", "token_loss", "entropy"):
        ref_field = getattr(stats64, field)
        assert_cce(field, getattr(stats, field), ref_field, getattr(stats_b, field), scale, log_space(ref_field))
    assert torch.equal(stats.ratio_clipped, stats64.ratio_clipped)
    torch.testing.assert_close(stats.loss_weights.double(), stats64.loss_weights)
    if mask is not None:
        assert (stats.token_loss[mask == 0] == 0).all()
    return stats


@pytest.mark.parametrize("source", ["none", "tensor", "k0", "k16"])
@pytest.mark.parametrize("lam", [0.0, 0.6])
@pytest.mark.parametrize("dtype", DTYPES)
def test_policy_loss_delta_sources(source, lam, dtype):
    """V = 1,423; 13 ragged tokens in chunks of 3, so chunk boundaries fall inside sequences; masked tokens."""
    stats = check_linear_policy_loss(13, 1423, dtype, source, lam)
    assert stats.ratio_clipped.any() and not stats.ratio_clipped.all(), "both clip branches must be exercised"


@pytest.mark.parametrize("source", ["tensor", "k16"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_policy_loss_full_qwen_vocabulary(source, dtype):
    """V = 151,936 (no power of two divides it past 2^7): 4 tokens in chunks of 3."""
    check_linear_policy_loss(4, 151936, dtype, source, 1.0, seed=1)


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean"])
@pytest.mark.parametrize("chunk_tokens", [1, 4, 64])
def test_policy_loss_aggregation_across_chunks(aggregation, chunk_tokens):
    """eq. 16's per-sequence means must not depend on where chunks cut (1 token each, mid-sequence,
    one chunk for all)."""
    check_linear_policy_loss(17, 1423, torch.float32, "k16", 1.0, chunk_tokens=chunk_tokens, aggregation=aggregation)


def test_lambda_zero_is_grpo_exactly():
    gen = torch.Generator().manual_seed(2)
    h, w, th = make_problem(12, 8, 500, gen)
    tokens = make_tokens(th @ w.T, gen)
    old, adv, _ = policy_inputs((h @ w.T).double(), tokens, [5, 7], gen)
    support = kernels.linear_teacher_topk(th, w, tokens, 16, chunk_tokens=5)
    loss, stats = kernels.linear_visd_policy_loss(h, w, tokens, old, adv, support, [5, 7], 0.0, chunk_tokens=5,
                                                  return_stats=True)
    assert torch.equal(stats.advantages_hat, adv)
    assert torch.equal(loss, kernels.linear_visd_policy_loss(h, w, tokens, old, adv, None, [5, 7], 0.3, chunk_tokens=5))


def test_chunk_size_does_not_change_the_result_fp64():
    """fp64 through the C++ kernels: chunk sizes from 1 to past N agree to fp64 rounding."""
    gen = torch.Generator().manual_seed(3)
    h, w, th = (x.double() for x in make_problem(11, 8, 300, gen))
    tokens = make_tokens(th @ w.T, gen)
    seq_lens = ragged_seq_lens(11)
    old, adv, _ = policy_inputs(h @ w.T, tokens, seq_lens, gen)
    support = kernels.linear_teacher_topk(th, w, tokens, 16, chunk_tokens=4)
    results = [run_linear(h, w, tokens, old, adv, support, seq_lens, lam=1.0, chunk_tokens=c)
               for c in (1, 2, 5, 11, 50)]
    for loss, (gh, gw), stats in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        torch.testing.assert_close(gh, results[0][1][0])
        torch.testing.assert_close(gw, results[0][1][1])
        torch.testing.assert_close(stats.token_loss, results[0][2].token_loss)


def test_gradcheck_fp64():
    gen = torch.Generator().manual_seed(4)
    h, w, _ = (x.double() for x in make_problem(5, 4, 11, gen))
    tokens = make_tokens(h @ w.T, gen)
    old, adv, delta = (x.double() for x in policy_inputs(h @ w.T, tokens, [2, 3], gen))
    args = (h.clone().requires_grad_(), w.clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b: kernels.linear_token_logprobs(a, b, tokens, 0.7, chunk_tokens=2), args)
    for d in (None, delta):
        assert torch.autograd.gradcheck(
            lambda a, b, d=d: kernels.linear_visd_policy_loss(a, b, tokens, old, adv, d, [2, 3], 0.6, temperature=0.9,
                                                              chunk_tokens=2), args)


def test_tied_weight_gradient_accumulates():
    """W is the embedding too (tie_embeddings): hidden comes from W's rows, and W also has a penalty;
    its gradient must sum all three paths exactly as with the logits op."""
    gen = torch.Generator().manual_seed(5)
    _, w0, _ = make_problem(1, 16, 700, gen)
    ids = torch.randint(0, 700, (9,), generator=gen)
    mix = torch.randn(16, 16, generator=gen) / 4
    tokens = torch.randint(0, 700, (9,), generator=gen)
    old = torch.full((9,), -6.0)
    adv = torch.linspace(-1, 1, 9)
    grads = []
    for fused in (True, False):
        w = w0.clone().requires_grad_()
        hidden = torch.tanh(w[ids] @ mix)  # the "backbone": an embedding lookup into the same W
        if fused:
            loss = kernels.linear_visd_policy_loss(hidden, w, tokens, old, adv, None, [4, 5], 0.0, chunk_tokens=2)
        else:
            loss = kernels.visd_policy_loss(hidden @ w.T, tokens, old, adv, None, [4, 5], 0.0)
        (loss + 1e-3 * (w**2).sum()).backward()
        grads.append(w.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_upstream_gradient_scales_and_frozen_head():
    """grad_output ≠ 1 scales both gradients; a frozen lm_head (no requires_grad) gets none, hidden still does."""
    gen = torch.Generator().manual_seed(6)
    h, w, _ = make_problem(6, 8, 300, gen)
    tokens = make_tokens(h @ w.T, gen)
    old, adv, delta = policy_inputs((h @ w.T).double(), tokens, [6], gen)
    _, (gh, gw), _ = run_linear(h, w, tokens, old, adv, delta, [6], lam=1.0, chunk_tokens=4)
    h2, w2 = h.clone().requires_grad_(), w.clone().requires_grad_()
    (3 * kernels.linear_visd_policy_loss(h2, w2, tokens, old, adv, delta, [6], 1.0, chunk_tokens=4)).backward()
    torch.testing.assert_close(h2.grad, 3 * gh)
    torch.testing.assert_close(w2.grad, 3 * gw)
    h3 = h.clone().requires_grad_()
    kernels.linear_visd_policy_loss(h3, w, tokens, old, adv, delta, [6], 1.0, chunk_tokens=4).backward()
    torch.testing.assert_close(h3.grad, gh)
    with torch.no_grad():
        loss = kernels.linear_visd_policy_loss(h.requires_grad_(), w, tokens, old, adv, delta, [6], 1.0)
    assert not loss.requires_grad


# ---- token log-probs and the teacher summary ------------------------------------------------------

@pytest.mark.parametrize("n,vocab", [(13, 1423), (4, 151936)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_token_logprobs(n, vocab, dtype):
    gen = torch.Generator().manual_seed(n + vocab)
    h32, w32, _ = make_problem(n, 16, vocab, gen)
    h, w = h32.to(dtype), w32.to(dtype)
    h64, w64 = h.double(), w.double()
    tokens = make_tokens(h64 @ w64.T, gen)
    upstream = torch.randn(n, generator=gen, dtype=torch.float64)
    upstream[::3] = 0  # rows with no upstream gradient

    def upstream_loss(lp):
        return (lp * upstream.to(lp.dtype)).sum()

    def run(fn):
        a, b = h.clone().requires_grad_(), w.clone().requires_grad_()
        lp = fn(a, b)
        upstream_loss(lp).backward()
        return lp.detach(), (a.grad, b.grad)

    lp, grads = run(lambda a, b: kernels.linear_token_logprobs(a, b, tokens, 0.7, chunk_tokens=3))
    lp_op, grads_op = run(lambda a, b: kernels.token_logprobs(chunked_logits(a, b, 3), tokens, 0.7))
    assert lp.dtype == torch.float32
    assert_same("logprobs vs logits op", lp, lp_op, dtype)
    for name, g, g_op in zip(("grad_hidden", "grad_weight"), grads, grads_op):
        assert g.dtype == dtype
        assert_same(f"{name} vs logits op", g, g_op, dtype)
    lp_b, grads_b = run(lambda a, b: reference.token_logprobs(chunked_logits(a, b, 3), tokens, 0.7))
    _, grads64, _, dlogits64 = run_truth(lambda z: upstream_loss(reference.token_logprobs(z, tokens, 0.7)), h, w, 3)
    lp64 = reference.token_logprobs(chunked_logits(h, w, 3).double(), tokens, 0.7)
    scale = float((h64 @ w64.T).abs().max()) / 0.7
    assert_cce("logprobs", lp, lp64, lp_b, scale, log_space(lp64))
    matmul_grads_cce(grads, grads64, grads_b, dlogits64, h64, w64, scale, dtype)


@pytest.mark.parametrize("n,vocab", [(13, 1423), (4, 151936)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [0, 16])
def test_teacher_topk(n, vocab, dtype, k):
    gen = torch.Generator().manual_seed(n + k)
    h32, w32, _ = make_problem(n, 16, vocab, gen)
    h, w = h32.to(dtype), w32.to(dtype)
    logits = chunked_logits(h, w, 3)
    logits64 = logits.double()
    tokens = make_tokens(logits64, gen)
    support = kernels.linear_teacher_topk(h, w, tokens, k, 0.7, chunk_tokens=3)
    whole = kernels.teacher_topk(logits, tokens, k, 0.7)
    ref64 = reference.teacher_topk(logits64, tokens, k, 0.7)
    base = reference.teacher_topk(logits, tokens, k, 0.7)
    assert support.k == k and support.temperature == 0.7 and support.n_tokens == n
    assert torch.equal(support.topk_ids, whole.topk_ids)
    scale = float(logits64.abs().max()) / 0.7
    for field in ("topk_logits", "token_logits") + (("token_logprobs",) if k == 0 else ()):
        assert torch.equal(getattr(support, field), getattr(whole, field)), field  # the same kernel on the same rows
        assert_cce(field, getattr(support, field), getattr(ref64, field), getattr(base, field), scale,
                   log_space(getattr(ref64, field)))


# ---- memory, edge cases -----------------------------------------------------------------------------

_CPU = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)


class TensorSizes(TorchDispatchMode):
    """Records the shape of every tensor an op returns, inside our own visd:: custom ops too (their
    bodies are re-run under this mode), during forward and backward."""

    def __init__(self):
        super().__init__()
        self.shapes: set[tuple[int, ...]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "visd":
            with self:
                out = func.redispatch(_CPU, *args, **(kwargs or {}))
        else:
            out = func(*args, **(kwargs or {}))
        self.shapes.update(tuple(x.shape) for x in tree_leaves(out) if isinstance(x, torch.Tensor))
        return out

    def largest(self) -> int:
        return max(torch.Size(s).numel() for s in self.shapes)


@pytest.mark.parametrize("op", ["policy_loss", "token_logprobs", "teacher_topk"])
def test_no_tensor_of_size_n_by_v(op):
    """N = 64 tokens, V = 1,423, H = 16, chunks of 8: every tensor made is at most max(8·V, V·H) (the
    logits chunk, grad_W), never [N, V]; the chunk is seen, so the probe does look inside the ops."""
    n, hidden, vocab, chunk = 64, 16, 1423, 8
    gen = torch.Generator().manual_seed(7)
    h, w, th = make_problem(n, hidden, vocab, gen)
    h.requires_grad_()
    w.requires_grad_()
    tokens = make_tokens((th @ w.T).detach(), gen)
    old, adv, _ = policy_inputs((h @ w.T).detach().double(), tokens, [30, 34], gen)
    support = kernels.linear_teacher_topk(th, w, tokens, 16, chunk_tokens=chunk)
    probe = TensorSizes()
    with probe:
        if op == "policy_loss":
            loss = kernels.linear_visd_policy_loss(h, w, tokens, old, adv, support, [30, 34], 1.0, chunk_tokens=chunk)
            loss.backward()
        elif op == "token_logprobs":
            kernels.linear_token_logprobs(h, w, tokens, chunk_tokens=chunk).sum().backward()
        else:
            kernels.linear_teacher_topk(th, w, tokens, 16, chunk_tokens=chunk)
    assert (chunk, vocab) in probe.shapes
    assert (n, vocab) not in probe.shapes and probe.largest() <= max(chunk * vocab, vocab * hidden) < n * vocab


def test_empty_batch():
    h, w = torch.zeros(0, 8, requires_grad=True), torch.randn(50, 8, requires_grad=True)
    tokens, empty = torch.zeros(0, dtype=torch.long), torch.zeros(0)
    assert kernels.linear_token_logprobs(h, w, tokens).shape == (0,)
    assert kernels.linear_teacher_topk(h, w, tokens, 4).topk_ids.shape == (0, 4)
    loss = kernels.linear_visd_policy_loss(h, w, tokens, empty, empty, None, [], 1.0)
    loss.backward()
    assert loss.item() == 0.0 and (w.grad == 0).all()


def test_custom_ops_pass_opcheck():
    """Schema, fake kernels, autograd registration and AOT dispatch of visd::linear_*."""
    gen = torch.Generator().manual_seed(9)
    h, w, th = make_problem(5, 4, 37, gen)
    tokens = make_tokens(th @ w.T, gen)
    old, adv, _ = policy_inputs((h @ w.T).double(), tokens, [2, 3], gen)
    support = kernels.teacher_topk(th @ w.T, tokens, 4, 0.9)
    loss_args = (tokens, old, adv, kernels.aggregation_weights([2, 3], 5), None, support.topk_ids, support.topk_logits,
                 support.token_logits, None, 0.5, 0.2, 0.2, 0.2, 0.9, True)
    a, b = h.clone().requires_grad_(), w.clone().requires_grad_()
    torch.library.opcheck(linear_ops._linear_policy_loss_op, (a, b, *loss_args, True, True, 2, "cpp"))
    torch.library.opcheck(linear_ops._linear_token_logprobs_op, (a, b, tokens, 0.9, 2, "cpp"))
    lp, row_max, log_sum = linear_ops._linear_token_logprobs_op(h, w, tokens, 0.9, 2, "cpp")
    torch.library.opcheck(linear_ops._linear_token_logprobs_backward_op,
                          (h, w, tokens, row_max, log_sum, torch.randn(5, generator=gen), 0.9, True, True, 2, "cpp"))


@pytest.mark.parametrize("bad", ["dtype", "hidden_size", "chunk", "token"])
def test_invalid_arguments_raise(bad):
    h, w = torch.randn(5, 8), torch.randn(100, 8)
    tokens = torch.arange(5)
    kw = dict(chunk_tokens=0 if bad == "chunk" else 4)
    if bad == "dtype":
        w = w.bfloat16()
    elif bad == "hidden_size":
        w = torch.randn(100, 7)
    elif bad == "token":
        tokens = tokens + 99
    with pytest.raises(ValueError):
        kernels.linear_token_logprobs(h, w, tokens, **kw)


# ---- the Triton path, under the interpreter without a GPU ---------------------------------------------

def triton_interpretable() -> bool:
    """As in test_kernels_triton.py: the interpreter must have been on when triton was first imported."""
    import triton.language as tl

    return torch.cuda.is_available() or type(tl.standard.max).__name__ == "InterpretedFunction"


@pytest.mark.skipif(not triton_interpretable(), reason="triton was imported without its interpreter: "
                    "test_triton_in_a_fresh_interpreter_process runs it instead")
def test_triton_small_case(backend):
    """One small case through the Triton row kernels: the policy loss from a K = 16 support (whose
    summary also comes from linear_teacher_topk on Triton) and token log-probs, against the C++ path."""
    gen = torch.Generator().manual_seed(8)
    h, w, th = make_problem(7, 8, 300, gen)
    tokens = make_tokens(th @ w.T, gen)
    old, adv, _ = policy_inputs((h @ w.T).double(), tokens, [3, 4], gen)
    results = {}
    for name in ("triton", "cpp"):
        backend(name)
        support = kernels.linear_teacher_topk(th, w, tokens, 16, 0.9, chunk_tokens=3)
        loss, grads, stats = run_linear(h, w, tokens, old, adv, support, [3, 4], lam=0.7, temperature=0.9,
                                        chunk_tokens=3, loss_mask=torch.tensor([1, 1, 0, 1, 1, 1, 0]))
        a = h.clone().requires_grad_()
        kernels.linear_token_logprobs(a, w, tokens, 0.9, chunk_tokens=3).sum().backward()
        results[name] = (support, loss, grads, stats, a.grad)
    tri, cpp = results["triton"], results["cpp"]
    assert torch.equal(tri[0].topk_ids, cpp[0].topk_ids)
    torch.testing.assert_close(tri[1], cpp[1], rtol=1e-5, atol=1e-7)
    for g_tri, g_cpp in zip(tri[2], cpp[2]):
        torch.testing.assert_close(g_tri, g_cpp, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(tri[3].token_loss, cpp[3].token_loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(tri[4], cpp[4], rtol=1e-4, atol=1e-7)


@pytest.mark.skipif(triton_interpretable(), reason="this process interprets Triton: the test above ran here")
def test_triton_in_a_fresh_interpreter_process():
    env = os.environ | {"TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:logging", "-k", "triton_small"],
                         env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-4000:] + run.stderr[-2000:]
