"""A deprecated torch / transformers call from our code fails the test (tests/deprecations.py), and
the transformers range in pyproject.toml has the KV-cache argument the rollout passes."""
import inspect
import logging
import re
import sys
import tomllib

import pytest
import torch
from packaging.requirements import Requirement
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.modeling_outputs import MultimodalCausalLMOutputWithPast

from tests.deprecations import ROOT, our_caller
from visd_core.config import Config
from visd_core.model.build import build_unsharded

# Compiled under a visd_core/ file name, these functions run with our code's frames (no file is written).
PROBE = '''
import torch

def weight_norm():              # FutureWarning, which torch attributes to its own weight_norm.py
    return torch.nn.utils.weight_norm(torch.nn.Linear(2, 2))

def chain_matmul():             # a UserWarning "... is deprecated ...", attributed to torch/functional.py
    return torch.chain_matmul(torch.eye(2), torch.eye(2))

def forward_with_past_key_values(model):    # FutureWarning, attributed to transformers/utils/generic.py
    return model(input_ids=torch.tensor([[1, 2, 3]]), past_key_values=None, use_cache=True, logits_to_keep=1)

def read_past_key_values(out):  # a transformers log record, not a warning
    return out.past_key_values

def frame():
    return sys._getframe()
'''
PROBE_FILE = str(ROOT / "visd_core" / "_deprecation_probe.py")


@pytest.fixture(scope="module")
def probe():
    ns = {"sys": sys}
    exec(compile(PROBE, PROBE_FILE, "exec"), ns)
    return ns


def test_only_our_frames_are_blamed(probe):
    assert our_caller(probe["frame"]()).startswith(PROBE_FILE + ":")
    assert our_caller(sys._getframe()) is None          # a test calling a deprecated API is its own business


@pytest.mark.parametrize("call, category, text", [
    ("weight_norm", FutureWarning, "torch.nn.utils.weight_norm` is deprecated"),
    ("chain_matmul", UserWarning, "torch.chain_matmul is deprecated"),
])
def test_a_deprecated_torch_call_from_our_code_fails(probe, call, category, text):
    with pytest.raises(category, match=re.escape(text) + ".*called from " + re.escape(PROBE_FILE)):
        probe[call]()


def test_a_deprecated_transformers_argument_and_attribute_from_our_code_fail(probe):
    model = build_unsharded(Config().model, seed=0).eval()
    with torch.no_grad(), pytest.raises(FutureWarning, match="`past_key_values` is deprecated.*called from "
                                                              + re.escape(PROBE_FILE)):
        probe["forward_with_past_key_values"](model)
    logging.Logger.warning_once.cache_clear()     # transformers logs each message once per process
    with pytest.raises(DeprecationWarning, match="`past_key_values`/`cache_params` are deprecated.*called from "
                                                 + re.escape(PROBE_FILE)):
        probe["read_past_key_values"](MultimodalCausalLMOutputWithPast(logits=torch.zeros(1)))


def test_transformers_floor_has_the_cache_argument():
    # visd_core/rollout.py passes `cache=` and reads `output.cache`: transformers 5.24 introduced
    # them (5.23's Qwen2.5-VL forward takes only past_key_values, which 5.40 removes).
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(Requirement(d).specifier for d in deps if Requirement(d).name == "transformers")
    assert not spec.contains("5.23.0") and spec.contains("5.24.0") and spec.contains("5.40.0")
    assert "cache" in inspect.signature(Qwen2_5_VLForConditionalGeneration.forward).parameters   # the installed one
