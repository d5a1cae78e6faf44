"""The C++ CPU kernels (csrc/, through the public API with VISD_KERNEL_BACKEND=cpp) against the
reference: CCE's accuracy criterion over the issue's shape and edge-case matrix, the paper's
properties on the kernels' own outputs, gradcheck in fp64, masking and the in-place backward."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels
from kernels import reference
from kernel_test_cases import (KINDS, check_policy_loss, check_teacher_topk, check_token_logprobs,
                               check_topk_logratio, make_logits, make_pair, make_tokens, policy_inputs,
                               ragged_seq_lens)

SHAPES = [(7, 123), (5, 1423), (3, 32000), (2, 151936)]  # the large vocabularies with few tokens
DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(autouse=True)
def cpp(backend):
    backend("cpp")


def temperature_for(kind: str) -> float:
    return 0.7 if kind in ("normal", "masked", "ties") else 1.0  # T ≠ 1 across the matrix


@pytest.mark.parametrize("n,vocab", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_token_logprobs(n, vocab, dtype, kind):
    gen = torch.Generator().manual_seed(n * vocab)
    logits = make_logits(kind, n, vocab, gen).to(dtype)
    check_token_logprobs(logits, make_tokens(logits, gen), temperature_for(kind), gen)


@pytest.mark.parametrize("dtype", DTYPES)
def test_late_large_logit_takes_the_rescaling_path(dtype):
    """A logit hundreds above everything before it: summing its chunk against the stale running max
    would overflow exp, so the C++ sweep sums that chunk again against the chunk's own max."""
    gen = torch.Generator().manual_seed(13)
    logits = make_logits("normal", 3, 32000, gen)
    logits[:, -5] = 500.0
    logits[1, 2100] = 300.0  # a first jump in the second chunk, then the last one
    check_token_logprobs(logits.to(dtype), make_tokens(logits, gen), 1.0, gen)


@pytest.mark.parametrize("n,vocab", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [0, 1, 16, 64])
def test_teacher_topk(n, vocab, dtype, kind, k):
    gen = torch.Generator().manual_seed(k + vocab)
    teacher = make_logits(kind, n, vocab, gen).to(dtype)
    check_teacher_topk(teacher, make_tokens(teacher, gen), k, temperature_for(kind))


@pytest.mark.parametrize("n,vocab", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [0, 16])
def test_topk_logratio(n, vocab, dtype, kind, k):
    gen = torch.Generator().manual_seed(vocab - k)
    student, teacher, tokens = make_pair(kind, n, vocab, gen)
    check_topk_logratio(student.to(dtype), teacher.to(dtype), tokens, k, temperature_for(kind))


@pytest.mark.parametrize("n,vocab", [(13, 123), (11, 1423), (4, 32000), (3, 151936)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_policy_loss_edge_cases(n, vocab, dtype, kind):
    """Every logit family and size, ragged sequences, a loss mask, Δ_t from a K = 16 teacher support."""
    gen = torch.Generator().manual_seed(vocab + n)
    student, teacher, tokens = make_pair(kind, n, vocab, gen)
    mask = (torch.arange(n) % 4 != 1).long()
    check_policy_loss(student.to(dtype), teacher.to(dtype), tokens, ragged_seq_lens(n), "k16", gen,
                      temperature=temperature_for(kind), loss_mask=mask)


@pytest.mark.parametrize("source", ["none", "tensor", "k0", "k1", "k16", "k64"])
@pytest.mark.parametrize("lam", [0.0, 1.0])
@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_policy_loss_delta_sources(source, lam, aggregation, dtype):
    gen = torch.Generator().manual_seed(3)
    student, teacher, tokens = make_pair("normal", 17, 1423, gen)
    stats = check_policy_loss(student.to(dtype), teacher.to(dtype), tokens, ragged_seq_lens(17), source, gen,
                              lam=lam, temperature=0.8, aggregation=aggregation)
    assert stats.ratio_clipped.any() and not stats.ratio_clipped.all(), "both clip branches must be exercised"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("source", ["tensor", "k16"])
def test_policy_loss_in_place_backward(dtype, source):
    gen = torch.Generator().manual_seed(4)
    student, teacher, tokens = make_pair("normal", 10, 1423, gen)
    check_policy_loss(student.to(dtype), teacher.to(dtype), tokens, ragged_seq_lens(10), source, gen, inplace=True)


def test_in_place_backward_consumes_the_logits_buffer():
    """The gradient lands in the logits storage (no second [N, V] buffer); the version counter records it."""
    gen = torch.Generator().manual_seed(5)
    student, teacher, tokens = make_pair("normal", 6, 300, gen)
    old, adv, delta = policy_inputs(student, tokens, [6], gen)
    leaf = student.clone().requires_grad_()
    logits = leaf * 1.0  # a non-leaf, like the lm_head output in training
    version = logits._version
    loss = kernels.visd_policy_loss(logits, tokens, old, adv, delta, [6], 1.0, inplace_backward=True)
    assert logits._version > version
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad.data_ptr() == logits.data_ptr()


def test_lambda_zero_gives_grpo_advantage_exactly_in_kernel():
    gen = torch.Generator().manual_seed(6)
    student, teacher, tokens = make_pair("normal", 12, 500, gen)
    old, adv, _ = policy_inputs(student, tokens, [5, 7], gen)
    support = kernels.teacher_topk(teacher, tokens, 16)
    _, stats = kernels.visd_policy_loss(student, tokens, old, adv, support, [5, 7], 0.0, return_stats=True)
    assert torch.equal(stats.advantages_hat, adv)
    grpo_loss = kernels.visd_policy_loss(student, tokens, old, adv, None, [5, 7], 0.5)
    assert torch.equal(kernels.visd_policy_loss(student, tokens, old, adv, support, [5, 7], 0.0), grpo_loss)


@pytest.mark.parametrize("lam", [0.3, 1.0])
def test_kernel_token_advantage_obeys_eq27_eq28(lam):
    gen = torch.Generator().manual_seed(7)
    student, teacher, tokens = make_pair("peaked", 40, 700, gen)
    old, adv, _ = policy_inputs(student, tokens, [10] * 4, gen)
    support = kernels.teacher_topk(teacher, tokens, 16)
    _, stats = kernels.visd_policy_loss(student, tokens, old, adv, support, [10] * 4, lam, eps_w=0.2,
                                        return_stats=True)
    m, a_hat = stats.token_weight, stats.advantages_hat
    assert ((m >= 0.8 - 1e-7) & (m <= 1.2 + 1e-7)).all()
    assert torch.equal(torch.sign(a_hat), torch.sign(adv))  # eq. 27
    nonzero = adv != 0
    ratio = a_hat[nonzero] / adv[nonzero]  # eq. 28
    assert ((ratio >= 1 - lam * 0.2 - 1e-6) & (ratio <= 1 + lam * 0.2 + 1e-6)).all()
    assert (stats.weight_clip != 0).any() and (stats.weight_clip == 0).any()


def test_clipped_and_zero_advantage_tokens_have_zero_gradient_rows():
    gen = torch.Generator().manual_seed(8)
    logits = make_logits("normal", 6, 200, gen)
    tokens = make_tokens(logits, gen)
    lp = reference.token_logprobs(logits, tokens)
    # ρ = 2 with A > 0 and ρ = 0.5 with A < 0: the clipped branch is the min; ρ = 1 with A = 0
    old = lp - torch.tensor([2.0, 0.5, 1.0, 2.0, 0.5, 1.0]).log()
    adv = torch.tensor([1.0, -1.0, 0.0, -1.0, 1.0, 0.5])
    x = logits.clone().requires_grad_()
    loss, stats = kernels.visd_policy_loss(x, tokens, old, adv, None, [6], 0.0, return_stats=True)
    loss.backward()
    assert stats.ratio_clipped.tolist() == [True, True, False, False, False, False]
    assert (x.grad[:3] == 0).all() and (x.grad[3:].abs().sum(-1) > 0).all()


def test_masked_tokens_ignore_their_inputs():
    """Masked tokens skip the sweep: their logits, old log-probs and advantages cannot leak in."""
    gen = torch.Generator().manual_seed(9)
    student, teacher, tokens = make_pair("normal", 8, 300, gen)
    old, adv, delta = policy_inputs(student, tokens, [4, 4], gen)
    mask = torch.tensor([1, 1, 0, 1, 0, 1, 1, 0])
    dirty = student.clone()
    dirty[mask == 0] = float("nan")
    old_dirty = torch.where(mask.bool(), old, torch.full_like(old, float("nan")))
    losses = []
    for logits, old_lp in ((student, old), (dirty, old_dirty)):
        x = logits.clone().requires_grad_()
        losses.append(kernels.visd_policy_loss(x, tokens, old_lp, adv, delta, [4, 4], 1.0, loss_mask=mask))
        losses[-1].backward()
        assert (x.grad[mask == 0] == 0).all()
    assert torch.equal(losses[0], losses[1])


def test_gradcheck_fp64():
    gen = torch.Generator().manual_seed(10)
    logits = make_logits("normal", 5, 11, gen).double()
    tokens = make_tokens(logits, gen)
    old, adv, delta = policy_inputs(logits, tokens, [2, 3], gen)
    old, adv, delta = old.double(), adv.double(), delta.double()
    x = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: kernels.token_logprobs(z, tokens, 0.7), (x,))
    for d in (None, delta):  # Δ precomputed: with a support, sg(Δ) makes the loss differ from its gradient
        assert torch.autograd.gradcheck(
            lambda z, d=d: kernels.visd_policy_loss(z, tokens, old, adv, d, [2, 3], 0.6, temperature=0.9), (x,))


def test_no_gradient_requested_means_no_gradient_buffer():
    gen = torch.Generator().manual_seed(11)
    student, _, tokens = make_pair("normal", 4, 100, gen)
    old, adv, delta = policy_inputs(student, tokens, [4], gen)
    with torch.no_grad():
        loss = kernels.visd_policy_loss(student.requires_grad_(), tokens, old, adv, delta, [4], 1.0,
                                        inplace_backward=True)
    assert not loss.requires_grad and torch.isfinite(student).all()  # in-place needs a backward to happen


def test_empty_batch():
    logits, tokens = torch.zeros(0, 50), torch.zeros(0, dtype=torch.long)
    assert kernels.token_logprobs(logits, tokens).shape == (0,)
    assert kernels.teacher_topk(logits, tokens, 4).topk_ids.shape == (0, 4)
    empty = torch.zeros(0)
    assert kernels.visd_policy_loss(logits, tokens, empty, empty, None, [], 1.0).item() == 0.0


@pytest.mark.parametrize("bad", [
    dict(k=200), dict(temperature=0.0), dict(seq_lens=[3, 3]), dict(aggregation="sum"), dict(lam=1.5),
    dict(tokens_out_of_range=True), dict(support_temperature=0.5),
])
def test_invalid_arguments_raise(bad):
    gen = torch.Generator().manual_seed(12)
    student, teacher, tokens = make_pair("normal", 5, 100, gen)
    old, adv, delta = policy_inputs(student, tokens, [5], gen)
    with pytest.raises(ValueError):
        if "k" in bad:
            kernels.teacher_topk(teacher, tokens, bad["k"])
        elif "tokens_out_of_range" in bad:
            kernels.token_logprobs(student, tokens + 100)
        elif "support_temperature" in bad:
            support = kernels.teacher_topk(teacher, tokens, 4, temperature=bad["support_temperature"])
            kernels.visd_policy_loss(student, tokens, old, adv, support, [5], 1.0)
        else:
            kw = dict(seq_lens=[5], lam=1.0, temperature=1.0, aggregation="seq_mean_token_mean") | bad
            kernels.visd_policy_loss(student, tokens, old, adv, delta, kw["seq_lens"], kw["lam"],
                                     temperature=kw["temperature"], aggregation=kw["aggregation"])


@pytest.mark.parametrize("cap", ["base", "avx2"])
def test_lower_instruction_sets(cap):
    """The row kernels are built per instruction set and the best one runs here; the portable baseline
    and the AVX2 build must be as correct, so a subprocess capped with VISD_CPU_ISA reruns a slice of
    this file (every delta source, the rescaling path, top-K ties across chunks) on them."""
    best = torch.ops.visd_cpu.cpu_isa()
    expected = "isa_base" if cap == "base" or best == "isa_base" else "isa_avx2"
    env = os.environ | {"VISD_CPU_ISA": cap}
    repo = Path(__file__).resolve().parents[2]
    probe = "import torch, kernels; kernels.backend.cpu_kernels_available(); print(torch.ops.visd_cpu.cpu_isa())"
    chosen = subprocess.run([sys.executable, "-c", probe], cwd=repo, env=env, capture_output=True, text=True)
    assert chosen.stdout.strip() == expected, chosen.stdout + chosen.stderr
    subset = "(delta_sources and seq_mean) or rescaling or (teacher_topk and ties and 1423)"
    run = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:logging", "-k", subset,
                          "--deselect", f"{__file__}::test_lower_instruction_sets"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
