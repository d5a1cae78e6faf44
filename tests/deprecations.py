"""A deprecated torch / transformers API that our own code (visd_core/, kernels/) calls fails the
test at the call, as `-W error` would: a release inside our pinned ranges removes it (transformers
5.24 deprecated the `past_key_values` argument "for removal in 5.40.0"; we allow <6).

A `filterwarnings = ["error::FutureWarning:visd_core"]` line cannot say this: its module is the one
the library blames, and the libraries blame their own frames (transformers' deprecate_kwarg points
at its wrapper in utils/generic.py; torch.nn.utils.weight_norm at itself). So the live stack is
walked when a warning is shown, inside pytest's capture, and the first frame of this repository
outside .venv is blamed: ours -> error, a test or script -> recorded as usual. Deprecations come as
Deprecation/PendingDeprecation/FutureWarning, as plain UserWarnings saying "deprecated" (torch.lu,
torch.chain_matmul) and as transformers log records (`output.past_key_values`): all three count.
`pytest.warns` / `catch_warnings(record=True)` inside a test still record without raising.
tests/conftest.py imports the two hooks below.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = tuple(str(ROOT / d) + os.sep for d in ("visd_core", "kernels"))
DEPRECATED = re.compile(r"\bdeprecated\b", re.IGNORECASE)


def our_caller(frame) -> str | None:
    """'path:line' of the first repository frame outward from `frame` if it is in visd_core/ or
    kernels/; None if that frame is a test or a script, or there is none."""
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(str(ROOT) + os.sep) and not path.startswith(str(ROOT / ".venv") + os.sep):
            return f"{path}:{frame.f_lineno}" if path.startswith(OURS) else None
        frame = frame.f_back
    return None


def is_deprecation(category: type[Warning], message: str) -> bool:
    return (issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))
            or DEPRECATED.search(message) is not None)


class _RaiseOnOurDeprecatedLog(logging.Handler):
    def emit(self, record):
        text = record.getMessage()
        where = our_caller(sys._getframe(1)) if DEPRECATED.search(text) else None
        if where:
            raise DeprecationWarning(f"{text} (logged by {record.name}; called from {where})")


@contextlib.contextmanager
def our_deprecations_raise():
    shown = warnings.showwarning        # pytest's recorder while its capture is active

    def showwarning(message, category, filename, lineno, file=None, line=None):
        where = our_caller(sys._getframe(1)) if is_deprecation(category, str(message)) else None
        if where:
            raise category(f"{message} (called from {where})")
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    handler = _RaiseOnOurDeprecatedLog(logging.WARNING)
    logging.getLogger("transformers").addHandler(handler)      # every transformers.* record reaches it
    try:
        yield
    finally:
        logging.getLogger("transformers").removeHandler(handler)
        warnings.showwarning = shown


# pytest's own capture wraps these hooks first (tryfirst), so ours runs inside it and sees module
# imports at collection and everything a test's setup (module fixtures too), call and teardown do.
@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    with our_deprecations_raise():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    with our_deprecations_raise():
        return (yield)
