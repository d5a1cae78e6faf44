"""Which implementation runs an op: CUDA → Triton, CPU → C++ (csrc/), else the PyTorch reference.

VISD_KERNEL_BACKEND=reference|triton|cpp forces one (triton on CPU tensors runs the Triton
interpreter, which must be switched on before triton is imported: see _enable_triton_interpreter).
The C++ library is looked up at $VISD_CPU_KERNELS_LIB, else <repo>/build/libvisd_cpu_kernels.so
(`make csrc` builds it); when it is missing, CPU ops fall back to the reference with one loud
warning. Nothing heavy happens at import: the library is loaded and Triton imported on first use,
so `import kernels` stays cheap (transformers may import it while probing).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch

BACKENDS = ("reference", "triton", "cpp")
ENV_BACKEND = "VISD_KERNEL_BACKEND"
ENV_CPU_LIB = "VISD_CPU_KERNELS_LIB"
DEFAULT_CPU_LIB = Path(__file__).resolve().parents[1] / "build" / "libvisd_cpu_kernels.so"

_cpu_library_loaded: bool | None = None  # None: not tried yet


def cpu_library_path() -> Path:
    return Path(os.environ.get(ENV_CPU_LIB) or DEFAULT_CPU_LIB)


def cpu_kernels_available() -> bool:
    """Loads the C++ library once; False (after one loud warning) when it is missing or broken."""
    global _cpu_library_loaded
    if _cpu_library_loaded is None:
        path = cpu_library_path()
        try:
            torch.ops.load_library(str(path))
            _cpu_library_loaded = True
        except (OSError, RuntimeError) as err:
            _cpu_library_loaded = False
            message = (f"visd kernels: the C++ CPU library could not be loaded from {path} ({err}). "
                       "CPU ops fall back to the slow PyTorch reference, which materializes full [N, V] "
                       "softmaxes. Run `make csrc` to build it, or set VISD_CPU_KERNELS_LIB.")
            print("!" * 100 + "\n" + message + "\n" + "!" * 100, file=sys.stderr)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
    return _cpu_library_loaded


def resolve(device: torch.device, dtype: torch.dtype) -> str:
    """The backend for tensors on `device` with logits of `dtype`."""
    forced = os.environ.get(ENV_BACKEND, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{ENV_BACKEND} must be one of {BACKENDS}, got {forced!r}")
        if forced == "cpp" and device.type != "cpu":
            raise ValueError(f"{ENV_BACKEND}=cpp needs CPU tensors, got {device}")
        if forced == "cpp" and not cpu_kernels_available():
            raise RuntimeError(f"{ENV_BACKEND}=cpp but the C++ library is missing at {cpu_library_path()}")
        if forced == "triton" and dtype == torch.float64:
            raise ValueError("the Triton kernels take fp32 or bf16 logits (fp64 runs on cpp or reference)")
        if forced == "triton" and device.type == "cpu":
            _enable_triton_interpreter()
        return forced
    if device.type == "cuda":
        return "reference" if dtype == torch.float64 else "triton"  # fp64 is the truth path, not a fast one
    if device.type == "cpu" and cpu_kernels_available():
        return "cpp"
    return "reference"


def _enable_triton_interpreter() -> None:
    """Triton picks compiled-vs-interpreted when a function is decorated, its own tl.* helpers
    included, so TRITON_INTERPRET must be set before triton is first imported (torch may import it
    lazily, e.g. when a custom op first runs)."""
    if "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
        return
    import triton.language as tl

    if type(tl.standard.max).__name__ != "InterpretedFunction":  # what decoration produced, not the env now
        raise RuntimeError("Triton on CPU tensors needs its interpreter, but triton was imported without "
                           "it: set TRITON_INTERPRET=1 before anything imports triton")


def triton_module(name: str) -> ModuleType:
    """kernels.<name>_triton, imported on first use."""
    return importlib.import_module(f"kernels.{name}_triton")
