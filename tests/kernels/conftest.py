import os

import pytest
import torch

# Triton decides compiled-vs-interpreted when triton is first imported; without a GPU the Triton
# kernels are tested under the interpreter, so switch it on before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def backend(monkeypatch):
    """Forces a backend for the duration of a test: backend('cpp') / backend('triton') / backend('reference')."""

    def force(name: str) -> None:
        monkeypatch.setenv("VISD_KERNEL_BACKEND", name)

    return force


@pytest.fixture(scope="session", autouse=True)
def cpu_library_built():
    """The C++ kernels are part of what is tested: a missing library is a failure, not a skip."""
    from kernels import backend as kernel_backend

    if not kernel_backend.cpu_kernels_available():
        pytest.fail(f"C++ kernels missing at {kernel_backend.cpu_library_path()}: run `make csrc`")
