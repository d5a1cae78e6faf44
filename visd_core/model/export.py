"""Export the policy as a Hugging Face directory that transformers (and vLLM) load as Qwen2.5-VL.

    <out>/config.json  generation_config.json  preprocessor_config.json
          model.safetensors  (or model-0000i-of-0000n.safetensors + model.safetensors.index.json)
          vocab.json merges.txt tokenizer.json tokenizer_config.json

Weights and config use the layout of the released Qwen2.5-VL checkpoints (flat text config,
`model.layers.*` / `visual.*` names), which every transformers version since Qwen2.5-VL and the
papers' own code read. The full state dict is gathered to rank 0's CPU, written to `<out>.tmp`,
and renamed into place, so `<out>` is never half-written.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from visd_core.model.build import to_hub_names
from visd_core.model.hf_tokenizer import write_tokenizer_files
from visd_core.parallel import Dist
from visd_core.tokenizer import load_tokenizer
from visd_core.vocab_subset import FILE_NAME as SUBSET_FILE, write_ids

_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def hub_config(config, dtype: torch.dtype) -> dict:
    """The released checkpoints' config.json layout: text fields at the top, M-RoPE as rope_scaling."""
    text = config.text_config.to_dict()
    rope = text.pop("rope_parameters")
    for k in ("model_type", "dtype", "layer_types", "transformers_version", "architectures"):
        text.pop(k, None)
    vision = config.vision_config.to_dict()
    for k in ("dtype", "transformers_version", "architectures", "rope_parameters"):
        vision.pop(k, None)
    vision["model_type"] = "qwen2_5_vl"
    return {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", **text,
            "rope_theta": rope["rope_theta"], "rope_scaling": {"type": "mrope", "mrope_section": rope["mrope_section"]},
            "vision_config": vision, "image_token_id": config.image_token_id, "video_token_id": config.video_token_id,
            "vision_start_token_id": config.vision_start_token_id, "vision_end_token_id": config.vision_end_token_id,
            "tie_word_embeddings": config.tie_word_embeddings, "torch_dtype": _DTYPE_NAMES[dtype]}


def _write_weights(tensors: dict[str, torch.Tensor], out: Path, max_shard_bytes: int) -> None:
    shards, size = [{}], 0
    for k in sorted(tensors):
        nbytes = tensors[k].numel() * tensors[k].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = tensors[k]
        size += nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata=meta)
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata=meta)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def export_hf(model: nn.Module, out_dir: str | Path, d: Dist, *, dtype: torch.dtype, tokenizer="",
              min_pixels: int = 3136, max_pixels: int = 12845056, max_shard_bytes: int = 5 * 2**30) -> Path:
    """Write the (sharded) policy to `out_dir` in `dtype`. Collective; rank 0 writes.
    `tokenizer` is a visd_core.tokenizer spec or a loaded tokenizer; min/max_pixels go to the image
    processor config. A vocabulary-subset model (the tiny default) also gets vocab_subset.json, the
    tokenizer id of each row: transformers loads its weights, but only visd's tokenizer
    (visd_core.vocab_subset) maps text to its rows."""
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    subset = getattr(tok, "ids", None)
    if dtype not in _DTYPE_NAMES:
        raise ValueError(f"export dtype {dtype} is not one of {', '.join(map(str, _DTYPE_NAMES))}")
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    out = Path(out_dir)
    if d.is_main:
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if model.config.tie_word_embeddings:
            full.pop("lm_head.weight", None)      # the tied copy: transformers re-ties it on load
        _write_weights({to_hub_names(k): v.to(dtype).contiguous() for k, v in full.items()}, tmp, max_shard_bytes)
        (tmp / "config.json").write_text(json.dumps(hub_config(model.config, dtype), indent=2))
        (tmp / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": tok.endoftext, "eos_token_id": list(tok.eos_ids), "pad_token_id": tok.pad_id}, indent=2))
        vision = model.config.vision_config
        (tmp / "preprocessor_config.json").write_text(json.dumps({  # what visd_core.data.video computes
            "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
            "patch_size": vision.patch_size, "temporal_patch_size": vision.temporal_patch_size,
            "merge_size": vision.spatial_merge_size, "min_pixels": min_pixels, "max_pixels": max_pixels,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "do_convert_rgb": True}, indent=2))
        write_tokenizer_files(getattr(tok, "base", tok), tmp)
        if subset is not None:
            write_ids(subset, tmp / SUBSET_FILE)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    dist.barrier()
    return out
