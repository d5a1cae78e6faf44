"""LoRA (Hu et al., 2022) for the VP-Selector: low-rank adapters on the language model, backbone frozen.

    n = add_lora(model)                     # visioncoach App. C.4: r = 16, α = 32, dropout 0.05
    ...train the A/B matrices only...
    save_adapter(model, "selector/adapter.safetensors")
    load_adapter(fresh_model, "selector/adapter.safetensors")   # adds the adapters, fills them
    merge_lora(model)                       # in place: W ← W + (α/r)·B·A, plain nn.Linear again

Adapters go on the LANGUAGE model's attention (q, k, v, o) and MLP (gate, up, down) projections
only (App. C.4); the vision tower has gate/up/down projections of its own and stays untouched.
A forward is y = W x + b + (α/r) · B A dropout(x), with B initialised to zero so that a fresh
adapter leaves the model's outputs exactly as they were, and A as nn.Linear initialises its
weight (Kaiming-uniform, a = √5), as peft does.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RANK, ALPHA, DROPOUT = 16, 32.0, 0.05      # visioncoach App. C.4


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int = RANK, alpha: float = ALPHA, dropout: float = DROPOUT):
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {r}")
        self.base = base
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        self.r, self.alpha = r, float(alpha)
        self.scaling = self.alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merged(self) -> nn.Linear:
        """The base layer with W + (α/r)·B·A written into its weight (fp32 product, then cast)."""
        w = self.base.weight
        delta = (self.lora_B.float() @ self.lora_A.float()) * self.scaling
        with torch.no_grad():
            w.copy_((w.float() + delta).to(w.dtype))
        return self.base


def _language_model(model: nn.Module) -> nn.Module:
    """Qwen2.5-VL's decoder (model.model.language_model); a bare decoder is taken as is."""
    inner = getattr(model, "model", None)
    return getattr(inner, "language_model", model)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRALinear of the model by its qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def add_lora(model: nn.Module, targets: tuple[str, ...] = TARGETS, r: int = RANK, alpha: float = ALPHA,
             dropout: float = DROPOUT) -> int:
    """Freeze every parameter of `model`, then wrap the language model's linear layers named in
    `targets` in LoRALinear (trainable A and B). Returns the number of layers wrapped."""
    if lora_layers(model):
        raise ValueError("the model already carries LoRA adapters")
    for p in model.parameters():
        p.requires_grad_(False)
    lm = _language_model(model)
    found = [(n, m) for n, m in lm.named_modules() if n.rsplit(".", 1)[-1] in targets and isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"no linear layer named one of {', '.join(targets)} in the language model")
    for name, linear in found:
        parent_name, _, child = name.rpartition(".")
        parent = lm.get_submodule(parent_name) if parent_name else lm
        setattr(parent, child, LoRALinear(linear, r, alpha, dropout))
    return len(found)


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The A and B matrices: what the optimizer updates."""
    return [p for layer in lora_layers(model).values() for p in (layer.lora_A, layer.lora_B)]


def merge_lora(model: nn.Module) -> nn.Module:
    """In place: every LoRALinear becomes its base nn.Linear with the merged weight. Returns `model`,
    now dense (its state dict is the plain model's again)."""
    for name, layer in lora_layers(model).items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.merged())
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model carries no LoRA adapters")
    return {f"{n}.{k}": getattr(m, k).detach().contiguous() for n, m in layers.items() for k in ("lora_A", "lora_B")}


def save_adapter(model: nn.Module, path: str | Path) -> None:
    """The A/B matrices only, as safetensors; r, α, dropout and targets in its metadata."""
    layers = lora_layers(model)
    sd = adapter_state_dict(model)
    first = next(iter(layers.values()))
    targets = sorted({n.rsplit(".", 1)[-1] for n in layers})
    meta = {"format": "pt", "lora": json.dumps({"r": first.r, "alpha": first.alpha, "dropout": first.dropout.p,
                                                "targets": targets})}
    save_file({k: v.cpu() for k, v in sd.items()}, str(path), metadata=meta)


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Add adapters as the file's metadata describes them (unless the model has them already) and
    fill them; every adapter tensor must be present with its shape, nothing extra (ValueError)."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if "lora" not in meta:
            raise ValueError(f"{path}: not a LoRA adapter file (no 'lora' metadata)")
        spec = json.loads(meta["lora"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if not lora_layers(model):
        add_lora(model, tuple(spec["targets"]), spec["r"], spec["alpha"], spec["dropout"])
    own = adapter_state_dict(model)
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or extra:
        raise ValueError(f"{path}: adapter does not fit the model ({len(missing)} missing, e.g. "
                         f"{missing[:1]}; {len(extra)} unexpected, e.g. {extra[:1]})")
    for k, v in own.items():
        if v.shape != tensors[k].shape:
            raise ValueError(f"{path}: {k} has shape {tuple(tensors[k].shape)}, the model needs {tuple(v.shape)}")
        with torch.no_grad():
            v.copy_(tensors[k])
    return model
