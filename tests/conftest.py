import os
import sys
from pathlib import Path

import torch

# Tests import the repo's packages (visd_core, kernels) from the working tree.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Triton decides interpreted-vs-compiled per @triton.jit function as it is defined, i.e. when a
# module of kernels/ is first imported, and refuses to mix the two. Any test module may import
# kernels (the trainer does), so the interpreter is switched on here, before collection starts.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# A deprecated torch / transformers API that visd_core/ or kernels/ calls fails the test (see there).
from tests.deprecations import pytest_collection, pytest_runtest_protocol  # noqa: E402,F401  (hooks)
