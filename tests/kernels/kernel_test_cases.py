"""Inputs and the accuracy criterion shared by the kernel tests.

Accuracy is Cut Cross-Entropy's criterion, per element: |impl − ref64| ≤ |baseline − ref64| + tol,
with ref64 the reference in fp64 and baseline the same reference at the input's working precision
(fp32, also for bf16 inputs since every kernel accumulates in fp32 — stricter than comparing with
bf16 PyTorch math). tol is a few fp32 ulps scaled by the size of the logits (log-softmax error grows
with |z/T|), plus one output ulp for bf16 outputs (rounding two close fp32 values may differ by one).
"""

from __future__ import annotations

import math

import torch

EPS32 = torch.finfo(torch.float32).eps
KINDS = ("normal", "peaked", "negative", "huge", "masked", "ties")


def make_logits(kind: str, n: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """fp32 [n, vocab] logits of one of the edge-case families."""
    x = torch.randn(n, vocab, generator=gen)
    if kind == "normal":
        return 3 * x
    if kind == "peaked":
        return 30 * x
    if kind == "negative":
        return -5 * x.abs() - 20
    if kind == "huge":
        return 1e4 * (2 * torch.rand(n, vocab, generator=gen) - 1)
    if kind == "masked":  # masked vocabulary entries; tokens() never picks them
        return torch.where(torch.rand(n, vocab, generator=gen) < 0.3, float("-inf"), 3 * x)
    if kind == "ties":  # few distinct values, exact in bf16: ties everywhere, also at the top-K border
        return torch.randint(-3, 4, (n, vocab), generator=gen).float()
    raise ValueError(kind)


def make_tokens(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """y_t: the argmax for even rows (inside any top-K), a random finite entry for odd rows (usually
    outside the teacher's top-K)."""
    n, vocab = logits.shape
    random_finite = torch.multinomial(torch.isfinite(logits).float(), 1, generator=gen)[:, 0]
    argmax = logits.argmax(-1)
    return torch.where(torch.arange(n) % 2 == 0, argmax, random_finite)


def row_scale(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """max |z/T| over finite entries per row, [N, 1]: the size that sets fp32 log-softmax error."""
    z = logits.double() / temperature
    return torch.where(torch.isfinite(z), z.abs(), torch.zeros_like(z)).amax(-1, keepdim=True)


def assert_cce(name: str, impl: torch.Tensor, ref64: torch.Tensor, baseline: torch.Tensor,
               scale: torch.Tensor | float = 0.0, magnitude: torch.Tensor | None = None,
               out_dtype: torch.dtype = torch.float32, extra: torch.Tensor | float = 0.0) -> None:
    """CCE's criterion. scale: |z/T| (per row, broadcastable); magnitude: what the rounding error is
    relative to (default |ref64|; log-space outputs pass |ref64| + 1, gradients add the row max);
    extra: an allowance added to tol (the rounding of a bf16 intermediate carried through a matmul)."""
    impl, ref64, baseline = impl.double(), ref64.double(), baseline.double()
    assert impl.shape == ref64.shape, f"{name}: shape {tuple(impl.shape)} != {tuple(ref64.shape)}"
    both_inf = torch.isinf(ref64) & (impl == ref64)
    magnitude = ref64.abs() if magnitude is None else magnitude
    tol = 16 * EPS32 * (1 + torch.as_tensor(scale, dtype=torch.float64)) * magnitude
    if out_dtype == torch.bfloat16:
        tol = tol + 2.0**-8 * ref64.abs()
    tol = tol + extra
    err = (impl - ref64).abs()
    allowed = (baseline - ref64).abs() + tol
    bad = ~both_inf & ~(err <= allowed)  # NaN counts as bad
    if bad.any():
        i = tuple(bad.nonzero()[0].tolist())
        raise AssertionError(f"{name}: {int(bad.sum())}/{bad.numel()} elements fail CCE; first at {list(i)}: "
                             f"impl={impl[i].item():.9g} ref64={ref64[i].item():.9g} "
                             f"baseline={baseline[i].item():.9g} allowed={allowed[i].item():.3g}")


def log_space(ref64: torch.Tensor) -> torch.Tensor:
    return ref64.double().abs() + 1


def grad_magnitude(ref64: torch.Tensor) -> torch.Tensor:
    """Gradient rows: 1 − p_y cancels at the sampled token, so allow error relative to the row's max."""
    g = ref64.double().abs()
    return g + g.amax(-1, keepdim=True)


def make_pair(kind: str, n: int, vocab: int, gen: torch.Generator):
    """(student, teacher, tokens): same vocabulary mask for both, y_t finite in both."""
    student = make_logits(kind, n, vocab, gen)
    teacher = make_logits(kind, n, vocab, gen)
    teacher = torch.where(torch.isinf(student), student, teacher)
    return student, teacher, make_tokens(teacher, gen)


def policy_inputs(logits: torch.Tensor, tokens: torch.Tensor, seq_lens: list[int], gen: torch.Generator,
                  temperature: float = 1.0, clip: float = 0.2):
    """old_logprobs with ρ on both sides of both clip bounds but never within 1% of one (the gradient
    jumps there, so a last-ulp difference would flip it); per-sequence advantages cycling through
    A < 0, A = 0, A > 0; a precomputed Δ_t spread so m_t is clipped low, inside and clipped high."""
    from kernels import reference

    n = logits.shape[0]
    logprobs = reference.token_logprobs(logits.double(), tokens, temperature)
    log_ratio = 0.4 * torch.randn(n, generator=gen, dtype=torch.float64)
    for bound in (1 - clip, 1 + clip):
        near = (log_ratio.exp() - bound).abs() < 0.01 * bound
        log_ratio = torch.where(near, log_ratio + 0.05, log_ratio)
    old_logprobs = (logprobs - log_ratio).float()
    seq_adv = torch.tensor([(-1.3, 0.0, 0.8)[i % 3] for i in range(len(seq_lens))]) * (
        1 + torch.rand(len(seq_lens), generator=gen))
    advantages = torch.repeat_interleave(seq_adv, torch.tensor(seq_lens))
    delta = 0.5 * torch.randn(n, generator=gen)
    return old_logprobs, advantages, delta


def ragged_seq_lens(n: int) -> list[int]:
    """Uneven sequence lengths summing to n (one of them a single token when n allows)."""
    lens, left, i = [], n, 0
    while left:
        take = min(left, (3, 1, 5, 2)[i % 4])
        lens.append(take)
        left -= take
        i += 1
    return lens


# ---- checks shared by the C++ and Triton tests (the backend is forced by the caller) --------------

def check_token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, gen: torch.Generator):
    """Forward, entropy and fused backward of kernels.token_logprobs against the reference."""
    import kernels
    from kernels import reference

    n = logits.shape[0]
    grad_weights = torch.randn(n, generator=gen, dtype=torch.float64)
    grad_weights[::3] = 0  # rows with zero upstream gradient take the zero-fill path

    def run(fn, x):
        x = x.clone().requires_grad_()
        lp = fn(x)
        (lp * grad_weights.to(lp.dtype)).sum().backward()
        return lp.detach(), x.grad

    x64 = logits.double()
    lp, grad = run(lambda x: kernels.token_logprobs(x, tokens, temperature), logits)
    lp64, grad64 = run(lambda x: reference.token_logprobs(x, tokens, temperature), x64)
    lp_base, grad_base = run(lambda x: reference.token_logprobs(x, tokens, temperature), logits)
    scale = row_scale(logits, temperature)
    assert lp.dtype == torch.float32 and grad.dtype == logits.dtype
    assert_cce("logprobs", lp, lp64, lp_base, scale[:, 0], log_space(lp64))
    assert_cce("grad", grad, grad64, grad_base, scale, grad_magnitude(grad64), out_dtype=logits.dtype)
    assert (grad[grad_weights == 0] == 0).all()
    _, entropy = kernels.token_logprobs(logits, tokens, temperature, return_entropy=True)
    assert_cce("entropy", entropy, reference.token_entropy(x64, temperature),
               reference.token_entropy(logits, temperature), scale[:, 0], log_space(lp64))


def check_teacher_topk(teacher: torch.Tensor, tokens: torch.Tensor, k: int, temperature: float):
    import kernels
    from kernels import reference

    support = kernels.teacher_topk(teacher, tokens, k, temperature)
    ref64 = reference.teacher_topk(teacher.double(), tokens, k, temperature)
    base = reference.teacher_topk(teacher, tokens, k, temperature)
    assert torch.equal(support.topk_ids, base.topk_ids)  # exact: same values, same tie rule
    assert support.k == k and support.temperature == temperature
    scale = row_scale(teacher, temperature)
    assert_cce("topk_logits", support.topk_logits, ref64.topk_logits, base.topk_logits, scale,
               log_space(ref64.topk_logits))
    assert_cce("token_logits", support.token_logits, ref64.token_logits, base.token_logits, scale[:, 0],
               log_space(ref64.token_logits))
    if k == 0:
        assert_cce("token_logprobs", support.token_logprobs, ref64.token_logprobs, base.token_logprobs, scale[:, 0],
                   log_space(ref64.token_logprobs))
    else:
        assert support.token_logprobs is None


def check_topk_logratio(student, teacher, tokens, k: int, temperature: float):
    import kernels
    from kernels import reference

    delta = kernels.topk_logratio(student, teacher, tokens, k, temperature)
    ref64 = reference.topk_logratio(student.double(), teacher.double(), tokens, k, temperature)
    base = reference.topk_logratio(student, teacher, tokens, k, temperature)
    scale = torch.maximum(row_scale(student, temperature), row_scale(teacher, temperature))[:, 0]
    assert_cce("delta", delta, ref64, base, scale, log_space(ref64))


def run_policy_loss(fn, topk_fn, student, teacher, tokens, old, adv, delta_tensor, seq_lens, source: str, **kw):
    """(loss, dL/dlogits, stats) of one implementation; source: none | tensor | k<K> (a TeacherSupport)."""
    temperature = kw.get("temperature", 1.0)
    if source == "none":
        delta = None
    elif source == "tensor":
        delta = delta_tensor
    else:
        delta = topk_fn(teacher, tokens, int(source[1:]), temperature)
    x = student.clone().requires_grad_()
    loss, stats = fn(x, tokens, old, adv, delta, seq_lens, return_stats=True, **kw)
    loss.backward()
    return loss.detach(), x.grad, stats


def check_policy_loss(student, teacher, tokens, seq_lens, source: str, gen: torch.Generator, *, lam=1.0,
                      temperature=1.0, aggregation="seq_mean_token_mean", loss_mask=None, inplace=False):
    """kernels.visd_policy_loss (whatever backend is forced) against the reference: loss, gradient and
    every per-token stat by CCE; the clip flags exactly."""
    import kernels
    from kernels import reference

    old, adv, delta = policy_inputs(student, tokens, seq_lens, gen, temperature)
    kw = dict(lam=lam, temperature=temperature, aggregation=aggregation, loss_mask=loss_mask, with_entropy=True)
    loss, grad, stats = run_policy_loss(kernels.visd_policy_loss, kernels.teacher_topk, student, teacher, tokens, old,
                                        adv, delta, seq_lens, source, inplace_backward=inplace, **kw)
    loss64, grad64, stats64 = run_policy_loss(reference.visd_policy_loss, reference.teacher_topk, student.double(),
                                              teacher.double(), tokens, old, adv, delta, seq_lens, source, **kw)
    loss_b, grad_b, stats_b = run_policy_loss(reference.visd_policy_loss, reference.teacher_topk, student, teacher,
                                              tokens, old, adv, delta, seq_lens, source, **kw)
    scale = torch.maximum(row_scale(student, temperature), row_scale(teacher, temperature))
    loss_size = (stats64.loss_weights * stats64.token_loss).abs().sum() + loss64.abs()
    assert_cce("loss", loss, loss64, loss_b, scale.max(), loss_size)
    assert_cce("grad", grad, grad64, grad_b, scale, grad_magnitude(grad64), out_dtype=student.dtype)
    for field in ("logprobs", "delta", "token_weight", "advantages_hat", "ratio", "token_loss", "entropy"):
        ref_field = getattr(stats64, field)
        assert_cce(field, getattr(stats, field), ref_field, getattr(stats_b, field), scale[:, 0], log_space(ref_field))
    assert torch.equal(stats.ratio_clipped, stats64.ratio_clipped)
    # m_t's clip flag may flip where the fp64 weight sits within rounding of a bound; m_t itself is continuous
    signed_delta = torch.where(adv > 0, stats64.delta, torch.where(adv < 0, -stats64.delta, 0.0))  # log w_t
    log_bounds = torch.tensor([math.log(0.8), math.log(1.2)], dtype=torch.float64)
    near_bound = ((signed_delta[:, None] - log_bounds).abs() < 1e-4 * (1 + scale)).any(-1)
    assert torch.equal(stats.weight_clip[~near_bound], stats64.weight_clip[~near_bound])
    torch.testing.assert_close(stats.loss_weights.double(), stats64.loss_weights)
    if loss_mask is not None:
        assert (grad[loss_mask == 0] == 0).all() and (stats.token_loss[loss_mask == 0] == 0).all()
    return stats
