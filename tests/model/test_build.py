"""Model build: the tiny config, seeded init, attention/dtype choice, loading local safetensors."""
import json
import logging

import pytest
import torch
from safetensors.torch import save_file

from visd_core.config import Model
from visd_core.model import build_model, build_unsharded, compute_dtype, model_config, resolve_attn
from visd_core.model import build as build_mod
from visd_core.model.build import to_hub_names
from visd_core.model.export import hub_config


def test_tiny_config_is_qwen25vl_shaped():
    c = model_config(Model())
    t, v = c.text_config, c.vision_config
    assert (t.vocab_size, t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == \
        (151936, 64, 2, 4, 2)
    assert (c.image_token_id, c.video_token_id, c.vision_start_token_id) == (151655, 151656, 151652)
    assert t.eos_token_id == 151645 and t.bos_token_id == 151643
    assert (v.patch_size, v.temporal_patch_size, v.spatial_merge_size, v.depth) == (14, 2, 2, 1)
    assert v.out_hidden_size == t.hidden_size and v.hidden_size == 32
    assert sum(t.rope_parameters["mrope_section"]) == (64 // 4) // 2   # covers half of each head
    with pytest.raises(ValueError, match="M-RoPE"):
        model_config(Model(hidden_size=16, num_heads=4, num_kv_heads=2))   # head size 4


def test_seeded_init_is_a_function_of_the_seed():
    rng_before = torch.get_rng_state()
    a, b, c = (build_unsharded(Model(), seed=s) for s in (7, 7, 8))
    assert torch.equal(torch.get_rng_state(), rng_before), "building must not consume the global RNG"
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["lm_head.weight"], sc["lm_head.weight"])


def test_attention_and_dtype_choice(monkeypatch, caplog):
    cpu, cuda, bf16, fp32 = torch.device("cpu"), torch.device("cuda"), torch.bfloat16, torch.float32
    assert compute_dtype("auto", cpu) == fp32 and resolve_attn("auto", cpu, fp32) == "sdpa"
    assert compute_dtype("auto", cuda) == bf16 and compute_dtype("float32", cuda) == fp32
    with pytest.raises(ValueError, match="flash_attn"):
        resolve_attn("flash_attention_2", cpu, bf16)
    monkeypatch.setattr(build_mod, "flash_attn_available", lambda: True)
    assert resolve_attn("auto", cuda, bf16) == "flash_attention_2"
    assert resolve_attn("auto", cuda, fp32) == "sdpa"          # flash-attn computes in 16 bits only
    with pytest.raises(ValueError, match="bfloat16"):
        resolve_attn("flash_attention_2", cuda, fp32)
    monkeypatch.setattr(build_mod, "flash_attn_available", lambda: False)
    monkeypatch.setattr(build_mod, "_ANNOUNCED", set())
    with caplog.at_level(logging.INFO, logger="visd_core.model.build"):
        assert [resolve_attn("auto", cuda, bf16) for _ in range(3)] == ["sdpa"] * 3
    banners = [r for r in caplog.records if "falls back to PyTorch SDPA" in r.getMessage()]
    assert len(banners) == 1 and banners[0].levelno == logging.WARNING   # loud, and once
    with pytest.raises(ValueError, match="model.attn"):
        resolve_attn("xformers", cpu, fp32)


def _write_checkpoint(model, d, shards=2):
    """The model as the released checkpoints are laid out: hub names, flat config, sharded index."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(hub_config(model.config, torch.float32)))
    sd = {to_hub_names(k): v.contiguous() for k, v in model.state_dict().items()}
    keys = sorted(sd)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in keys[i::shards]}
        save_file(part, str(d / name))
        weight_map.update(dict.fromkeys(part, name))
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return sd


def test_load_sharded_local_checkpoint(tmp_path, world1):
    src = build_unsharded(Model(), seed=5)
    sd = _write_checkpoint(src, tmp_path / "ckpt")
    assert any(k.startswith("visual.") for k in sd) and any(k.startswith("model.layers.") for k in sd)
    spec = Model(path=str(tmp_path / "ckpt"), hidden_size=999)      # the checkpoint's own sizes win
    loaded = build_unsharded(spec)
    for (n, p), (_, q) in zip(loaded.state_dict().items(), src.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    for (n, p), (_, q) in zip(loaded.named_buffers(), src.named_buffers(), strict=True):
        assert torch.equal(p, q), n      # RoPE frequencies rebuilt after the meta-device build
    sharded = build_model(spec, world1)
    for (n, p), (_, q) in zip(sharded.named_parameters(), src.named_parameters(), strict=True):
        assert torch.equal(p.full_tensor(), q), n


def test_bad_checkpoint_directories(tmp_path):
    def load(d):
        return build_unsharded(Model(path=str(d)))

    with pytest.raises(ValueError, match="no config.json"):
        load(tmp_path / "nowhere")
    src = build_unsharded(Model(), seed=0)
    good = tmp_path / "good"
    _write_checkpoint(src, good)
    bad = tmp_path / "noweights"
    bad.mkdir()
    (bad / "config.json").write_text((good / "config.json").read_text())
    with pytest.raises(ValueError, match="safetensors only"):
        load(bad)
    (bad / "model.safetensors.index.json").write_text((good / "model.safetensors.index.json").read_text())
    with pytest.raises(ValueError, match="does not exist"):
        load(bad)
    (bad / "model.safetensors.index.json").unlink()
    save_file({"lm_head.weight": torch.zeros(151936, 64)}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        load(bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="unreadable safetensors"):
        load(bad)
    cfg = json.loads((good / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(ValueError, match="expected 'qwen2_5_vl'"):
        load(bad)
