"""The Triton kernels (VISD_KERNEL_BACKEND=triton) against the reference, and against the C++ kernels.

Without a GPU they run under TRITON_INTERPRET=1 (tests/kernels/conftest.py turns it on before triton
is imported), which executes every tile op in NumPy: shapes are small, except one V = 151,936 row per
op; the interpreter's tiles (kernels/triton_rows.py) are smaller than V there, so multi-tile sweeps,
the top-K merge across tiles and masked tails are all covered. Under the interpreter tl.topk costs
about half a second per call, hence few top-K cases.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels
from kernel_test_cases import (KINDS, check_policy_loss, check_teacher_topk, check_token_logprobs, make_logits,
                               make_pair, make_tokens, policy_inputs, ragged_seq_lens)

DTYPES = [torch.float32, torch.bfloat16]


def interpreter_active() -> bool:
    """Triton fixes compiled-vs-interpreted when its own tl.* helpers are decorated, at its first
    import; if another test module imported it (e.g. through transformers' Qwen2.5-VL) before
    tests/kernels/conftest.py switched the interpreter on, this process cannot interpret kernels."""
    import triton.language as tl

    return torch.cuda.is_available() or type(tl.standard.max).__name__ == "InterpretedFunction"


IN_PROCESS = interpreter_active()
in_process = pytest.mark.skipif(not IN_PROCESS, reason="triton was imported without its interpreter: "
                                "test_in_a_fresh_interpreter_process runs this file instead")


@pytest.fixture(autouse=True)
def triton_backend(backend):
    backend("triton")


KINDS_AT_SMALL_V = [(n, vocab, kind) for n, vocab in ((5, 123), (3, 1423)) for kind in KINDS]
ONE_LONG_ROW = [(1, 151936, "masked")]  # the long sweep, masked vocabulary and a masked tail tile


@in_process
@pytest.mark.parametrize("n,vocab,kind", KINDS_AT_SMALL_V + ONE_LONG_ROW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_token_logprobs(n, vocab, kind, dtype):
    gen = torch.Generator().manual_seed(vocab)
    logits = make_logits(kind, n, vocab, gen).to(dtype)
    check_token_logprobs(logits, make_tokens(logits, gen), 0.7 if kind == "masked" else 1.0, gen)


@in_process
@pytest.mark.parametrize("k", [0, 1, 16, 64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "ties"])
def test_teacher_topk(k, dtype, kind):
    gen = torch.Generator().manual_seed(k)
    teacher = make_logits(kind, 2, 123, gen).to(dtype)
    check_teacher_topk(teacher, make_tokens(teacher, gen), k, 0.7)


@in_process
def test_teacher_topk_merges_across_tiles():
    """Three 512-wide tiles of tied values: the running top-K merge must keep the lowest indices."""
    gen = torch.Generator().manual_seed(1)
    teacher = make_logits("ties", 2, 1423, gen)
    check_teacher_topk(teacher, make_tokens(teacher, gen), 16, 1.0)


@in_process
@pytest.mark.parametrize("source", ["none", "tensor", "k0", "k16"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_policy_loss(source, dtype):
    gen = torch.Generator().manual_seed(2)
    student, teacher, tokens = make_pair("normal", 7, 300, gen)
    mask = torch.tensor([1, 1, 0, 1, 1, 1, 0])
    check_policy_loss(student.to(dtype), teacher.to(dtype), tokens, ragged_seq_lens(7), source, gen, lam=1.0,
                      temperature=0.8, loss_mask=mask)


@in_process
@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean"])
def test_policy_loss_in_place_and_lambda_zero(aggregation):
    gen = torch.Generator().manual_seed(3)
    student, teacher, tokens = make_pair("peaked", 6, 700, gen)
    replay = torch.Generator()
    replay.set_state(gen.get_state())
    stats = check_policy_loss(student, teacher, tokens, [4, 2], "tensor", gen, lam=0.0, aggregation=aggregation,
                              inplace=True)
    _, adv, _ = policy_inputs(student, tokens, [4, 2], replay)  # the advantages check_policy_loss drew
    assert torch.equal(stats.advantages_hat, adv)  # λ = 0: Â = A exactly (plain GRPO)


@in_process
def test_policy_loss_one_long_row():
    gen = torch.Generator().manual_seed(4)
    student, teacher, tokens = make_pair("normal", 1, 151936, gen)
    check_policy_loss(student, teacher, tokens, [1], "tensor", gen, temperature=0.9)


@in_process
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpp_and_triton_agree(backend, dtype):
    gen = torch.Generator().manual_seed(5)
    student, teacher, tokens = make_pair("normal", 5, 300, gen)
    student, teacher = student.to(dtype), teacher.to(dtype)
    old, adv, _ = policy_inputs(student, tokens, [2, 3], gen)
    results = {}
    for name in ("triton", "cpp"):
        backend(name)
        support = kernels.teacher_topk(teacher, tokens, 16, 0.9)
        x = student.clone().requires_grad_()
        loss, stats = kernels.visd_policy_loss(x, tokens, old, adv, support, [2, 3], 0.7, temperature=0.9,
                                               return_stats=True, with_entropy=True)
        loss.backward()
        results[name] = (support, loss, x.grad, stats)
    (s_tri, l_tri, g_tri, st_tri), (s_cpp, l_cpp, g_cpp, st_cpp) = results["triton"], results["cpp"]
    assert torch.equal(s_tri.topk_ids, s_cpp.topk_ids)
    torch.testing.assert_close(s_tri.topk_logits, s_cpp.topk_logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(l_tri, l_cpp, rtol=1e-5, atol=1e-6)
    grad_tol = dict(rtol=1e-2, atol=1e-4) if dtype == torch.bfloat16 else dict(rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(g_tri.float(), g_cpp.float(), **grad_tol)
    for field in ("logprobs", "delta", "token_weight", "advantages_hat", "ratio", "token_loss", "entropy"):
        torch.testing.assert_close(getattr(st_tri, field), getattr(st_cpp, field), rtol=1e-5, atol=1e-5)
    assert torch.equal(st_tri.ratio_clipped, st_cpp.ratio_clipped)


@pytest.mark.skipif(IN_PROCESS, reason="this process interprets Triton: the tests above ran here")
def test_in_a_fresh_interpreter_process():
    env = os.environ | {"TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:logging"], env=env,
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-4000:] + run.stderr[-2000:]
