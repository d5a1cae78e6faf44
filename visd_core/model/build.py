"""Build the policy: the tiny Qwen2.5-VL described by `[model]`, or a local Hugging Face checkpoint.

The model is created on the meta device, sharded (visd_core.parallel), materialized, and then
filled from a full state dict that only rank 0 holds — a seeded init for the tiny model, or the
checkpoint's safetensors (`model.safetensors`, or shards listed in `model.safetensors.index.json`;
never pickles, never the hub) — broadcast shard by shard. So a 7B model costs each rank only its
shard, and every world size starts from bitwise the same weights for a seed.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from transformers import Qwen2_5_VLConfig

from visd_core.config import Model as ModelCfg
from visd_core.model.policy import ENDOFTEXT_ID, IM_END_ID, Qwen2_5_VLPolicy
from visd_core.parallel import Dist, shard_model
from visd_core.vocab_subset import SubsetTokenizer

log = logging.getLogger(__name__)

# Vision geometry fixed by every Qwen2.5-VL checkpoint: 14-px patches, 2 frames per temporal patch,
# 2x2 patches merged into one LLM token (so image sides are multiples of 28 px).
PATCH_SIZE, TEMPORAL_PATCH_SIZE, SPATIAL_MERGE_SIZE = 14, 2, 2

_ANNOUNCED: set[tuple] = set()


# ---------------------------------------------------------------------------- attention, dtype
def flash_attn_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except Exception:      # missing, or built against another torch/CUDA: both mean "not usable"
        return False
    return True


def resolve_attn(spec: str, device: torch.device, dtype: torch.dtype) -> str:
    """The attention implementation for `model.attn` on `device` computing in `dtype`; logged once
    per process. flash-attn 2 needs CUDA, an importable flash_attn and a 16-bit compute dtype."""
    usable = device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
    if spec == "flash_attention_2" and not (usable and flash_attn_available()):
        raise ValueError("model.attn = 'flash_attention_2' needs a CUDA device, an importable flash_attn and "
                         f"model.dtype bfloat16 (compute dtype here: {dtype}, device: {device.type})")
    if spec in ("sdpa", "eager", "flash_attention_2"):
        choice = spec
    elif spec == "auto":
        choice = "flash_attention_2" if usable and flash_attn_available() else "sdpa"
    else:
        raise ValueError(f"model.attn = {spec!r} is not one of 'auto', 'sdpa', 'flash_attention_2', 'eager'")
    key = (spec, device.type, dtype, choice)
    if key not in _ANNOUNCED:
        _ANNOUNCED.add(key)
        if spec == "auto" and usable and choice == "sdpa":
            bar = "!" * 78
            log.warning("\n%s\n!!  flash_attn does not import: attention falls back to PyTorch SDPA.\n"
                        "!!  Expect lower throughput and more memory; pip install flash-attn to fix.\n%s", bar, bar)
        log.info("attention: %s (model.attn = %s, %s, %s)", choice, spec, device.type, dtype)
    return choice


def compute_dtype(spec: str, device: torch.device) -> torch.dtype:
    """What forward/backward compute in: bf16 on CUDA, fp32 on CPU for "auto". Parameters stay fp32."""
    if spec == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if spec in ("bfloat16", "float32"):
        return getattr(torch, spec)
    raise ValueError(f"model.dtype = {spec!r} is not one of 'auto', 'bfloat16', 'float32'")


# ---------------------------------------------------------------------------- configs
def tiny_config(m: ModelCfg, tok=None) -> Qwen2_5_VLConfig:
    """A small Qwen2.5-VL with the real vocabulary and special-token ids (config defaults), or with
    the rows of `tok` when it is a vocabulary subset (visd_core.vocab_subset.SubsetTokenizer)."""
    head_dim = m.hidden_size // m.num_heads
    # M-RoPE splits each head's rotary half into (time, height, width) sections; Qwen2.5-VL's
    # [16, 24, 24] of 64 scaled to this head size.
    hw = 3 * head_dim // 16
    t = head_dim // 2 - 2 * hw
    if head_dim % 2 or hw < 1 or t < 1:
        raise ValueError(f"model: head size hidden_size/num_heads = {head_dim} must be even and >= 6 for M-RoPE")
    if m.vision_hidden_size % m.vision_heads or (m.vision_hidden_size // m.vision_heads) % 4:
        raise ValueError(f"model: vision head size {m.vision_hidden_size}/{m.vision_heads} must be a multiple of 4 "
                         "(2-D rotary embedding)")
    if isinstance(tok, SubsetTokenizer):
        vocab, bos, eos = tok.model_vocab_size, tok.endoftext, tok.im_end
        special = dict(image_token_id=tok.image_pad, video_token_id=tok.video_pad,
                       vision_start_token_id=tok.vision_start, vision_end_token_id=tok.vision_end)
    else:
        vocab, bos, eos, special = m.vocab_size, ENDOFTEXT_ID, IM_END_ID, {}
    text = dict(vocab_size=vocab, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_kv_heads,
                max_position_embeddings=32768, rms_norm_eps=1e-6, bos_token_id=bos, eos_token_id=eos,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [t, hw, hw]})
    vision = dict(depth=m.vision_depth, hidden_size=m.vision_hidden_size, intermediate_size=2 * m.vision_hidden_size,
                  num_heads=m.vision_heads, out_hidden_size=m.hidden_size, patch_size=PATCH_SIZE,
                  temporal_patch_size=TEMPORAL_PATCH_SIZE, spatial_merge_size=SPATIAL_MERGE_SIZE,
                  tokens_per_second=2, window_size=112,
                  fullatt_block_indexes=[m.vision_depth - 1])   # the 7B: full attention every 8th block, last included
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=m.tie_embeddings, **special)


def model_config(m: ModelCfg, tok=None) -> Qwen2_5_VLConfig:
    """`[model]`'s tiny config (on `tok`'s rows, see tiny_config), or `<model.path>/config.json`
    (whose sizes then win over `[model]`'s)."""
    if not m.path:
        return tiny_config(m, tok)
    d = Path(m.path)
    if not (d / "config.json").is_file():
        raise ValueError(f"model.path {d}: no config.json there (expected a local Hugging Face model directory)")
    _weight_files(d)    # fail on every rank, before any collective, when weights are missing
    try:
        raw = json.loads((d / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"model.path {d}: config.json is not valid JSON ({e})") from None
    if raw.get("model_type") != "qwen2_5_vl":
        raise ValueError(f"model.path {d}: model_type is {raw.get('model_type')!r}, expected 'qwen2_5_vl'")
    return Qwen2_5_VLConfig.from_dict(raw)


# ---------------------------------------------------------------------------- weights
# The released checkpoints (and our exports) name weights as transformers < 4.52 did; the model
# class nests them one level deeper. Both spellings load.
_HUB_TO_MODEL = ((re.compile(r"^visual\."), "model.visual."),
                 (re.compile(r"^model\.(?!visual\.|language_model\.)"), "model.language_model."))
_MODEL_TO_HUB = ((re.compile(r"^model\.visual\."), "visual."), (re.compile(r"^model\.language_model\."), "model."))


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        key, n = pattern.subn(repl, key)
        if n:
            break
    return key


def to_model_names(key: str) -> str:
    return _rename(key, _HUB_TO_MODEL)


def to_hub_names(key: str) -> str:
    return _rename(key, _MODEL_TO_HUB)


def _weight_files(d: Path) -> list[Path]:
    index = d / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ValueError(f"{index}: not a safetensors index ({e!r})") from None
        missing = [n for n in names if not (d / n).is_file()]
        if missing:
            raise ValueError(f"{index}: lists shard {missing[0]} which does not exist")
        return [d / n for n in names]
    if (d / "model.safetensors").is_file():
        return [d / "model.safetensors"]
    raise ValueError(f"{d}: no model.safetensors or model.safetensors.index.json (weights are read from "
                     "safetensors only)")


def load_safetensors(path: str | Path, config: Qwen2_5_VLConfig) -> dict[str, torch.Tensor]:
    """The full state dict of a local checkpoint, in the model's names, floats as fp32 (master weights)."""
    d = Path(path)
    sd = {}
    for f in _weight_files(d):
        try:
            with safe_open(f, framework="pt", device="cpu") as fh:
                for k in fh.keys():
                    if k.endswith("rotary_emb.inv_freq"):    # old exports carried this derived buffer
                        continue
                    t = fh.get_tensor(k)
                    sd[to_model_names(k)] = t.float() if t.is_floating_point() else t
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{f}: unreadable safetensors file ({e})") from None
    if config.tie_word_embeddings and "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd.get("model.language_model.embed_tokens.weight")
    return sd


def _check_state_dict(sd: dict, model: torch.nn.Module, where: str) -> None:
    """Every weight present with the right shape, nothing extra — one-line errors."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    if missing:
        raise ValueError(f"{where}: {len(missing)} weight(s) missing, e.g. {missing[0]}")
    if extra:
        raise ValueError(f"{where}: {len(extra)} unexpected weight(s), e.g. {extra[0]}")
    for k, shape in want.items():
        if tuple(sd[k].shape) != shape:
            raise ValueError(f"{where}: {k} has shape {tuple(sd[k].shape)}, the config implies {shape}")


def _seeded_init(config: Qwen2_5_VLConfig, seed: int, attn: str) -> Qwen2_5_VLPolicy:
    """The tiny model's fp32 CPU init: a function of the seed alone; leaves the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Qwen2_5_VLPolicy._from_config(config, attn_implementation=attn, dtype=torch.float32)


def _empty(config: Qwen2_5_VLConfig, attn: str) -> Qwen2_5_VLPolicy:
    with torch.device("meta"):
        return Qwen2_5_VLPolicy._from_config(config, attn_implementation=attn, dtype=torch.float32)


def _reset_rope_buffers(model: torch.nn.Module) -> None:
    # RoPE frequencies are non-persistent buffers: no state dict carries them, so after a meta
    # build they are recomputed from the config by transformers' own initializer for them.
    for mod in model.modules():
        if hasattr(mod, "original_inv_freq"):
            model._init_weights(mod)


def build_unsharded(m: ModelCfg, *, seed: int = 0, device: str | torch.device = "cpu",
                    weights: bool = True, tok=None) -> Qwen2_5_VLPolicy:
    """The plain (unsharded, fp32) model: references in tests, single-device tools.
    weights=False leaves a `model.path` model's parameters unset (its safetensors unread), for a
    caller that loads a training checkpoint into it next. `tok`: see tiny_config."""
    device = torch.device(device)
    config = model_config(m, tok)
    attn = resolve_attn(m.attn, device, torch.float32)
    if not m.path:
        return _seeded_init(config, seed, attn).to(device)
    model = _empty(config, attn)
    model.to_empty(device=device)
    _reset_rope_buffers(model)
    if not weights:
        return model
    sd = load_safetensors(m.path, config)
    _check_state_dict(sd, model, m.path)
    model.load_state_dict(sd, strict=True)
    return model


def build_model(m: ModelCfg, d: Dist, *, seed: int = 0, tok=None) -> Qwen2_5_VLPolicy:
    """The training policy: FSDP2-sharded over `d`, fp32 shards on `d.device`, weights loaded.

    Collective: every rank calls it. Compute dtype and attention follow `m.dtype` / `m.attn`;
    `tok`: see tiny_config.
    """
    config = model_config(m, tok)
    dtype = compute_dtype(m.dtype, d.device)
    attn = resolve_attn(m.attn, d.device, dtype)
    model = _empty(config, attn)
    shard_model(model, d, param_dtype=dtype, activation_checkpointing=m.activation_checkpointing)
    model.to_empty(device=d.device)
    _reset_rope_buffers(model)
    full, err = {}, None
    if d.is_main:
        try:
            full = _seeded_init(config, seed, attn).state_dict() if not m.path else load_safetensors(m.path, config)
            _check_state_dict(full, model, m.path or "tiny init")
        except ValueError as e:
            err = str(e)
    box = [err]
    dist.broadcast_object_list(box, src=0)    # rank 0's error reaches every rank instead of a hang
    if box[0]:
        raise ValueError(box[0])
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    log.info("model: %s, %.1fM parameters, compute %s, attention %s", m.path or "tiny Qwen2.5-VL",
             sum(p.numel() for p in model.parameters()) / 1e6, dtype, attn)
    return model
