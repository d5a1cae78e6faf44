"""Backend selection, the loud fallback when the C++ library is missing, the torch.library
registrations (opcheck), and that transformers never mistakes our `kernels` for Hugging Face's."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import kernels
from kernels import backend as kernel_backend
from kernels import ops, reference
from kernel_test_cases import make_pair, policy_inputs

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """A fresh interpreter in the repo root: import-time state (library loading, warnings, caches)
    starts clean."""
    clean_env = {k: v for k, v in os.environ.items() if k not in ("VISD_KERNEL_BACKEND", "VISD_CPU_KERNELS_LIB")}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=clean_env | env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_default_backends(monkeypatch):
    monkeypatch.delenv("VISD_KERNEL_BACKEND", raising=False)
    assert kernel_backend.resolve(torch.device("cpu"), torch.float32) == "cpp"
    assert kernel_backend.resolve(torch.device("cuda"), torch.bfloat16) == "triton"
    assert kernel_backend.resolve(torch.device("cuda"), torch.float64) == "reference"


@pytest.mark.parametrize("name,device", [("reference", "cpu"), ("cpp", "cpu"), ("triton", "cuda"),
                                         ("reference", "cuda")])
def test_forced_backend(backend, name, device):
    backend(name)
    assert kernel_backend.resolve(torch.device(device), torch.float32) == name


@pytest.mark.parametrize("name,device,dtype", [
    ("gpu", "cpu", torch.float32), ("cpp", "cuda", torch.float32), ("triton", "cpu", torch.float64),
])
def test_impossible_backend_requests_raise(backend, name, device, dtype):
    backend(name)
    with pytest.raises(ValueError):
        kernel_backend.resolve(torch.device(device), dtype)


def test_forced_cpp_without_library_raises(backend, monkeypatch):
    backend("cpp")
    monkeypatch.setattr(kernel_backend, "_cpu_library_loaded", False)
    with pytest.raises(RuntimeError, match="missing"):
        kernel_backend.resolve(torch.device("cpu"), torch.float32)


def test_forced_reference_runs_the_reference(backend):
    backend("reference")
    gen = torch.Generator().manual_seed(0)
    student, teacher, tokens = make_pair("normal", 6, 200, gen)
    old, adv, delta = policy_inputs(student, tokens, [2, 4], gen)
    assert torch.equal(kernels.visd_policy_loss(student, tokens, old, adv, delta, [2, 4], 0.5),
                       reference.visd_policy_loss(student, tokens, old, adv, delta, [2, 4], 0.5))
    assert torch.equal(kernels.topk_logratio(student, teacher, tokens, 8),
                       reference.topk_logratio(student, teacher, tokens, 8))


def test_missing_library_falls_back_to_reference_with_one_loud_warning():
    result = run_python("""
        import warnings, torch, kernels
        from kernels import reference
        warnings.simplefilter("always")
        x, y = torch.randn(4, 50).requires_grad_(), torch.tensor([1, 2, 3, 4])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lp = kernels.token_logprobs(x, y)
            loss = kernels.visd_policy_loss(x, y, lp.detach(), torch.ones(4), None, [4], 0.0)
            kernels.teacher_topk(x, y, 3)
        fallback = [w for w in caught if "fall back" in str(w.message)]
        assert len(fallback) == 1, [str(w.message) for w in caught]
        assert torch.equal(lp, reference.token_logprobs(x, y))
        assert torch.equal(loss, reference.visd_policy_loss(x, y, lp.detach(), torch.ones(4), None, [4], 0.0))
        assert kernels.backend.resolve(torch.device("cpu"), torch.float32) == "reference"
    """, VISD_CPU_KERNELS_LIB="/nonexistent/libvisd_cpu_kernels.so")
    assert result.stderr.count("C++ CPU library could not be loaded") == 1


def test_transformers_does_not_mistake_our_kernels_for_hf_kernels():
    run_python("""
        import importlib.util, sys
        from pathlib import Path
        spec = importlib.util.find_spec("kernels")
        assert spec is not None and Path(spec.origin).resolve() == Path("kernels/__init__.py").resolve()
        from transformers.utils import import_utils
        assert not import_utils.is_kernels_available()
        import kernels
        assert hasattr(kernels, "visd_policy_loss")  # ours is importable, and transformers said no
        assert "triton" not in sys.modules                   # probing stays cheap: nothing heavy at import
        assert kernels.backend._cpu_library_loaded is None
    """)


def opcheck_inputs():
    gen = torch.Generator().manual_seed(1)
    student, teacher, tokens = make_pair("normal", 5, 37, gen)
    old, adv, delta = policy_inputs(student, tokens, [2, 3], gen)
    weights = kernels.aggregation_weights([2, 3], 5)
    support = kernels.teacher_topk(teacher, tokens, 4)
    loss_args = (tokens, old, adv, weights, None, support.topk_ids, support.topk_logits, support.token_logits, None,
                 0.5, 0.2, 0.2, 0.2, 0.9, True)
    return student, tokens, delta, loss_args


def test_custom_ops_pass_opcheck():
    """Schema (declared mutations), fake kernels, autograd registration and AOT dispatch of visd::*."""
    student, tokens, delta, loss_args = opcheck_inputs()
    x = student.clone().requires_grad_()
    torch.library.opcheck(ops._token_logprobs_op, (x, tokens, 0.9, True, "cpp"))
    torch.library.opcheck(ops._teacher_topk_op, (student, tokens, 4, 0.9, "cpp"))
    torch.library.opcheck(ops._policy_loss_op, (x, *loss_args, True, "cpp"))
    torch.library.opcheck(ops._policy_loss_inplace_op, (student.clone(), *loss_args, "cpp"),
                          test_utils=("test_schema", "test_faketensor"))
