"""LoRA (selector/lora.py): merged weights reproduce the adapted forward, only A/B learn, the vision
tower is untouched, and an adapter survives a save/load round trip."""
import copy

import pytest
import torch
from safetensors import safe_open

from visd_core.config import Model
from visd_core.model.build import build_unsharded
from visd_core.selector.lora import (TARGETS, LoRALinear, add_lora, load_adapter, lora_layers, lora_parameters,
                                     merge_lora, save_adapter)

# fp32: the merged forward computes (W + s·BA)x where the adapted one computes Wx + s·B(Ax); the two
# roundings differ by a few ulps per layer, ~1e-6 on logits of magnitude ~1 through two layers.
ATOL, RTOL = 2e-5, 1e-4


@pytest.fixture(scope="module")
def base():
    return build_unsharded(Model(), seed=1).eval()


def _ids():
    return torch.randint(0, 5000, (2, 23), generator=torch.Generator().manual_seed(0))


def _adapted(base, seed=0):
    model = copy.deepcopy(base)
    add_lora(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(0.05 * torch.randn(layer.lora_B.shape, generator=g))
    return model.eval()


def test_adapters_sit_on_the_language_model_projections_only(base):
    model = copy.deepcopy(base)
    n = add_lora(model)
    layers = lora_layers(model)
    assert n == len(layers) == len(TARGETS) * base.config.text_config.num_hidden_layers
    assert all(name.startswith("model.language_model.layers.") for name in layers)
    assert {name.rsplit(".", 1)[-1] for name in layers} == set(TARGETS)
    assert not any("visual" in name for name in layers)           # the vision MLP has gate/up/down too
    first = next(iter(layers.values()))
    assert (first.r, first.scaling, first.dropout.p) == (16, 2.0, 0.05)   # App. C.4: r 16, α 32, dropout 0.05
    assert all(torch.equal(layer.lora_B, torch.zeros_like(layer.lora_B)) for layer in layers.values())
    with torch.no_grad():                                          # B = 0: a fresh adapter changes nothing
        assert torch.equal(model.eval()(input_ids=_ids()).logits, base(input_ids=_ids()).logits)


def test_lora_forward_equals_the_merged_dense_model(base):
    model = _adapted(base)
    with torch.no_grad():
        adapted = model(input_ids=_ids()).logits
        plain = base(input_ids=_ids()).logits
        merged_model = merge_lora(copy.deepcopy(model))
        merged = merged_model(input_ids=_ids()).logits
    assert not lora_layers(merged_model)
    assert set(merged_model.state_dict()) == set(base.state_dict())     # dense again: the stock names
    assert (adapted - plain).abs().max() > 1e-3                          # the adapter does something
    torch.testing.assert_close(merged, adapted, atol=ATOL, rtol=RTOL)


def test_gradients_reach_only_the_adapters(base):
    model = _adapted(base)
    model.train()
    model(input_ids=_ids()).logits.float().pow(2).mean().backward()
    trainable = {id(p) for p in lora_parameters(model)}
    assert len(trainable) == 2 * len(lora_layers(model))
    for name, p in model.named_parameters():
        if id(p) in trainable:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name


def test_adapter_round_trip(base, tmp_path):
    model = _adapted(base, seed=7)
    path = tmp_path / "adapter.safetensors"
    save_adapter(model, path)
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.endswith((".lora_A", ".lora_B")) for k in keys)   # the adapter only, no base weight
    fresh = copy.deepcopy(base)
    load_adapter(fresh, path)                       # adds the adapters from the file's metadata
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=_ids()).logits, model(input_ids=_ids()).logits)
    smaller = copy.deepcopy(base)
    add_lora(smaller, r=4)
    with pytest.raises(ValueError, match="has shape"):
        load_adapter(smaller, path)
    assert isinstance(next(iter(lora_layers(fresh).values())), LoRALinear)
