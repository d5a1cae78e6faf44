"""Per-GPU memory plan of an RL run, from its config alone: no GPU, no weights.

    python -m visd_core.plan --config configs/visd_qwen25vl_7b.toml --gpus 8 --gpu-mem-gb 80
    python -m visd_core.plan --config configs/visd_qwen25vl_7b.toml --gpus 8 --gpu-mem-gb 40 --no-fused-linear \\
        --data.max_pixels=200704                      # any --section.key=value override, as train.py takes

The model is built on the meta device from `model.path/config.json` — or, when that directory is absent
(a recipe pointing at a checkpoint not on this machine), from Qwen2.5-VL-7B-Instruct's published
config.json (QWEN25_VL_7B below) — and its parameters are counted per FSDP2 unit as visd_core.parallel
shards them (one unit per decoder layer, the vision tower, the root: embeddings, final norm, lm_head).
Each item of an RL step (the SFT stage has no rollout or teacher and fewer rows) is then placed in the
phases where it is resident, and the largest phase total, plus an allowance, is compared with the GPU's
memory (exit status 1 when it does not fit):

    rollout     generate() under visd_core.parallel.gathered: the whole model gathered, KV cache, prefill
    teacher     the no-grad teacher (and reference) replay of the B·G rollouts
    update      the policy update at its activation peak: the end of the forward / start of the backward
    vision bwd  the backward through the vision tower (its recompute, its unsharded gradients)
    reduce      the end of the backward: the root unit's gradients reduce-scattered in fp32

Activation bytes per token (bf16 compute, cd = 2; "H" hidden, "I" MLP width, "kv" = kv_heads·head_dim):
the tensors autograd saves in transformers' Qwen2.5-VL modules, counted as Korthikanti et al. 2022
("Reducing Activation Recomputation in Large Transformer Models", arXiv:2205.05198, §4.1) count them for
GPT, redone for Qwen2: RMSNorm upcasts to fp32 (saves x fp32 4H, x̂ cd·H, and its output cd·H for the next
linear), attention saves q, k, v after RoPE, its output and the fp32 log-sum-exp (SDPA with enable_gqa and
FlashAttention-2 keep k, v at kv width and nothing quadratic — FlashAttention, Dao et al. 2022; the rotary
cos/sin are views of one table per forward), the SwiGLU MLP saves gate, silu(gate), up and their product:
    decoder layer  2·(4H + 2·cd·H) + 2·cd·H + 2·cd·kv + 4·heads + 4·cd·I + 8
                   = 20H + 4kv + 8I + 4·heads + 8 in bf16 (225,400 B for the 7B)
    vision block   2·(4Hv + 2·cd·Hv) + 3·cd·Hv (the fused qkv output, kept alive by v, a view of it)
                   + 2·cd·Hv (q, k after RoPE) + 2·cd·Hv (attention output, and its concatenated copy)
                   + 4·heads_v + 4·cd·Iv + 8 = 30Hv + 8Iv + ... in bf16 (65,832 B for the 7B)
Both were checked against the bytes saved by one layer/block in bf16 on CPU (torch.autograd.graph.
saved_tensors_hooks; tests/test_plan.py). With activation checkpointing (transformers' gradient
checkpointing: decoder layers and vision blocks) each layer keeps only its input (cd·H per token) and one
layer at a time is recomputed in the backward.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

GiB = 2 ** 30
# Allowance on top of the largest phase: CUDA context and kernels (~0.5 GiB on H100 with lazy module
# loading), NCCL communicators and cuBLAS workspaces (~1 GiB), then 5% of the peak for the caching
# allocator's fragmentation (reserved over allocated).
ALLOWANCE_GIB = 1.5
FRAGMENTATION = 0.05
# Prompt text besides the visual tokens: system prompt and format instruction (~150 tokens), one
# "Frame k at t s:" line per frame (~10 each), the question and options; the teacher's prompt adds the
# hindsight block (verified answer, evidence lines, judge feedback; visd_core/teacher/context.py).
TEXT_TOKENS = 512
HINDSIGHT_TOKENS = 512
TEACHER_CHUNK_TOKENS = 1024   # visd_core.trainer's chunk of teacher logits without the fused-linear ops
FUSED_CHUNK_TOKENS = 512      # kernels.linear_ops.DEFAULT_CHUNK_TOKENS

# Qwen/Qwen2.5-VL-7B-Instruct's config.json as published on the Hugging Face hub (text fields as in
# huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct-AWQ/blob/main/config.json, whose base is that model; vision
# fields spelled out as in transformers >= 4.53 exports of it, e.g. huggingface.co/unsloth/
# Qwen2.5-VL-7B-Instruct/blob/main/config.json). 8,292,166,656 parameters (tests/test_plan.py).
QWEN25_VL_7B = {
    "model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
    "hidden_act": "silu", "rope_theta": 1000000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "bos_token_id": 151643, "eos_token_id": 151645, "image_token_id": 151655, "video_token_id": 151656,
    "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                      "out_hidden_size": 3584, "in_chans": 3, "patch_size": 14, "spatial_patch_size": 14,
                      "temporal_patch_size": 2, "spatial_merge_size": 2, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "hidden_act": "silu"},
}

PHASES = ("rollout", "teacher", "update", "vision bwd", "reduce")


# ---------------------------------------------------------------------------- the model
def model_config(m):
    """(transformers config, where it came from) for `[model]`: the tiny config, model.path/config.json,
    or Qwen2.5-VL-7B's published one when model.path is set but not on this machine."""
    from transformers import Qwen2_5_VLConfig

    from visd_core.model.build import tiny_config

    if not m.path:
        return tiny_config(m), "the tiny config of [model]"
    path = Path(m.path) / "config.json"
    if path.is_file():
        return Qwen2_5_VLConfig.from_dict(json.loads(path.read_text())), str(path)
    return (Qwen2_5_VLConfig.from_dict(dict(QWEN25_VL_7B)),
            f"Qwen2.5-VL-7B-Instruct's published config.json ({path} is not on this machine)")


def meta_model(config) -> torch.nn.Module:
    """The policy on the meta device: shapes only, no memory, no init."""
    from visd_core.model.policy import Qwen2_5_VLPolicy

    with torch.device("meta"):
        return Qwen2_5_VLPolicy._from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def shard_numel(shape: torch.Size, world: int) -> int:
    """Rank 0's elements of a parameter FSDP2 shards on dim 0 over `world` ranks: ceil(d0 / world) rows
    (torch.chunk's split; rank 0 holds the most, and every rank's padded storage is this size)."""
    if len(shape) == 0:
        return 1
    return math.ceil(shape[0] / world) * math.prod(shape[1:])


@dataclass
class Units:
    """Parameter elements: whole FSDP2 units, and every parameter as rank 0 holds its shard."""
    total: int
    shard: int           # rank 0's elements of every parameter: what its fp32 master shard holds
    tensors: int         # parameter tensors (one AdamW `step` scalar each)
    root: int            # embeddings, final norm, lm_head (tied: one matrix)
    vision: int
    layer: int           # the largest decoder layer
    language: int        # the language model without its root parameters (all layers)
    padded: dict = field(default_factory=dict)   # "root", "vision", "layer", "all" -> elements gathered
                                                 # (rank 0's shard x world: FSDP2's padded all-gather output)


def count_units(model: torch.nn.Module, world: int) -> Units:
    layers = list(model.model.language_model.layers)
    in_layer = {id(p) for layer in layers for p in layer.parameters()}
    in_vision = {id(p) for p in model.model.visual.parameters()}
    params = list(model.parameters())          # shared (tied) parameters once, as FSDP2 sees them
    root = [p for p in params if id(p) not in in_layer and id(p) not in in_vision]

    def padded(ps) -> int:
        return sum(shard_numel(p.shape, world) * world for p in ps)

    layer_sizes = [sum(p.numel() for p in layer.parameters()) for layer in layers]
    largest = layers[layer_sizes.index(max(layer_sizes))]
    return Units(total=sum(p.numel() for p in params), shard=sum(shard_numel(p.shape, world) for p in params),
                 tensors=len(params), root=sum(p.numel() for p in root),
                 vision=sum(p.numel() for p in model.model.visual.parameters()), layer=max(layer_sizes),
                 language=sum(layer_sizes),
                 padded={"root": padded(root), "vision": padded(list(model.model.visual.parameters())),
                         "layer": padded(list(largest.parameters())), "all": padded(params)})


@dataclass
class Shapes:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    v_depth: int
    v_hidden: int
    v_heads: int
    v_intermediate: int
    patch: int
    temporal_patch: int
    merge: int


def shapes_of(config) -> Shapes:
    t, v = config.text_config, config.vision_config
    return Shapes(vocab=t.vocab_size, hidden=t.hidden_size, layers=t.num_hidden_layers, heads=t.num_attention_heads,
                  kv_heads=t.num_key_value_heads, head_dim=t.hidden_size // t.num_attention_heads,
                  intermediate=t.intermediate_size, v_depth=v.depth, v_hidden=v.hidden_size, v_heads=v.num_heads,
                  v_intermediate=v.intermediate_size, patch=v.patch_size, temporal_patch=v.temporal_patch_size,
                  merge=v.spatial_merge_size)


# ---------------------------------------------------------------------------- per-token formulas
def decoder_layer_bytes(s: Shapes, cd: int) -> int:
    """Bytes one decoder layer saves for backward per token (module docstring; measured in tests)."""
    H, kv = s.hidden, s.kv_heads * s.head_dim
    norms = 2 * (4 * H + 2 * cd * H)             # fp32 x, x̂ and the normed output, twice
    attention = 2 * cd * H + 2 * cd * kv + 4 * s.heads   # q and the output; k, v (GQA width); fp32 lse
    return norms + attention + 4 * cd * s.intermediate + 8   # + SwiGLU's four I-wide tensors, + 2 fp32 rsqrt


def vision_block_bytes(s: Shapes, cd: int) -> int:
    Hv = s.v_hidden
    norms = 2 * (4 * Hv + 2 * cd * Hv)
    attention = 3 * cd * Hv + 2 * cd * Hv + 2 * cd * Hv + 4 * s.v_heads   # qkv (via v), q/k after RoPE, out + cat
    return norms + attention + 4 * cd * s.v_intermediate + 8


def merger_bytes(s: Shapes, cd: int) -> int:
    """Per merged token: ln_q over its merge² patches, then the MLP's GELU input and second linear's input."""
    Hv, m2 = s.v_hidden, s.merge ** 2
    return m2 * (4 * Hv + 2 * cd * Hv) + 2 * cd * m2 * Hv


def kv_bytes_per_token(s: Shapes, cd: int) -> int:
    return s.layers * 2 * s.kv_heads * s.head_dim * cd


# ---------------------------------------------------------------------------- the token budget
@dataclass
class Tokens:
    prompts: int          # prompts per GPU per RL step
    group: int            # G rollouts per prompt
    patches_per_frame: int
    visual: int           # merged visual tokens of one prompt
    prompt: int           # prompt tokens of one row (capped by data.max_prompt_len)
    completion: int       # max_new_tokens
    rows: int             # prompts x G
    N: int                # completion tokens scored per GPU: rows x max_new_tokens
    frames: int           # data.num_frames

    @property
    def student(self) -> int:    # tokens of the student's forward: every row padded to prompt + completion
        return self.rows * (self.prompt + self.completion)

    @property
    def teacher(self) -> int:
        return self.rows * (self.prompt + HINDSIGHT_TOKENS + self.completion)

    @property
    def vision_patches(self) -> int:   # the update's vision tower sees each row's frames (collate repeats them)
        return self.rows * self.frames * self.patches_per_frame


def token_budget(cfg, s: Shapes) -> Tokens:
    # A frame is one image (temporal patch = the frame twice): max_pixels / patch² patches, merge² of them
    # per LLM token; data.max_pixels = 401,408 -> 2,048 patches -> 512 tokens per frame.
    patches = cfg.data.max_pixels // (s.patch * s.patch)
    visual = cfg.data.num_frames * (patches // s.merge ** 2)
    prompts = cfg.training.rl_batch_size or cfg.training.batch_size
    rows = prompts * cfg.rollout.group_size
    return Tokens(prompts=prompts, group=cfg.rollout.group_size, patches_per_frame=patches, visual=visual,
                  prompt=min(cfg.data.max_prompt_len, visual + TEXT_TOKENS), completion=cfg.rollout.max_new_tokens,
                  rows=rows, N=rows * cfg.rollout.max_new_tokens, frames=cfg.data.num_frames)


# ---------------------------------------------------------------------------- the plan
@dataclass
class Item:
    key: str              # a short id (tests read items by it)
    name: str
    phases: dict          # phase -> bytes
    note: str = ""


def _everywhere(b: int) -> dict:
    return {p: b for p in PHASES}


def state_items(cfg, u: Units, world: int) -> list[Item]:
    """What lives across the whole step: fp32 master shards, AdamW, the teacher and reference copies."""
    shard = u.shard * 4
    items = [Item("params", f"params: fp32 master shard (P/{world})", _everywhere(shard)),
             Item("grads", "grads: fp32 shards (made in the backward)", {"vision bwd": shard, "reduce": shard}),
             Item("adam", "AdamW exp_avg + exp_avg_sq: 2 x fp32 shard", _everywhere(2 * shard + 4 * u.tensors),
                  "+ one fp32 step scalar per tensor (fused=True)")]
    if cfg.algorithm.name == "visd" and cfg.teacher.kind in ("ema", "sync") and cfg.visd.lambda0 > 0:
        items.append(Item("teacher", f"{cfg.teacher.kind} teacher: fp32 shard (frozen_copy)", _everywhere(shard)))
    if cfg.algorithm.kl_beta > 0:
        items.append(Item("reference", "reference policy: fp32 shard (kl_beta > 0)", _everywhere(shard)))
    return items


def gather_items(cfg, u: Units, cd: int) -> list[Item]:
    root, vision, layer = (u.padded[k] * cd for k in ("root", "vision", "layer"))
    reduce = 1 + (4 // cd if cd < 4 else 0)   # the cd gradients, plus their fp32 copy when cd is 16-bit
    has_teacher = cfg.algorithm.name == "visd" and cfg.visd.lambda0 > 0 or cfg.algorithm.kl_beta > 0
    return [
        Item("gathered_model", "gathered weights: whole model (decode loop)", {"rollout": u.padded["all"] * cd},
             "visd_core.parallel.gathered keeps every unit gathered across decode steps"),
        Item("gathered_units", "gathered units: root + running + prefetched unit",
             {"teacher": (root + vision + layer) if has_teacher else 0, "update": root + 2 * layer,
              "vision bwd": root + vision, "reduce": root},
             f"root {root / GiB:.2f} GiB is the largest unit; vision {vision / GiB:.2f}, layer {layer / GiB:.2f}"),
        Item("reduce", "unsharded grads being reduced (cd, then fp32)",
             {"update": layer * reduce, "vision bwd": vision * reduce, "reduce": root * reduce},
             "FSDP2 casts a unit's gradients to reduce_dtype fp32 for the reduce-scatter"),
    ]


def decoder_activations(s: Shapes, T: int, cd: int, checkpointing: bool) -> int:
    """Saved for backward at the start of the backward, plus the running layer's backward temporaries
    (dL/dh and dL/d(gate, up): (cd·H + 2·cd·I) per token)."""
    per_layer = decoder_layer_bytes(s, cd)
    outside = cd * s.hidden + 4 * s.hidden + 2 * cd * s.hidden   # embeddings, final norm
    temporaries = (cd * s.hidden + 2 * cd * s.intermediate) * T
    if checkpointing:   # each layer's input, and one layer recomputed at a time
        return (s.layers * cd * s.hidden + per_layer + outside) * T + temporaries
    return (s.layers * per_layer + outside) * T + temporaries


def vision_activations(s: Shapes, patches: int, cd: int, checkpointing: bool, recomputing: bool) -> int:
    """The tower's saved activations for `patches` patch tokens; with checkpointing, only the blocks' inputs,
    plus one block recomputed while `recomputing` (its backward)."""
    per_block = vision_block_bytes(s, cd)
    merged = patches // s.merge ** 2
    fixed = patches * s.temporal_patch * 3 * s.patch ** 2 * cd + merged * merger_bytes(s, cd)   # patch_embed input
    if checkpointing:
        return fixed + patches * (s.v_depth * cd * s.v_hidden + (per_block if recomputing else 0))
    return fixed + patches * s.v_depth * per_block


def no_grad_transient(s: Shapes, T: int, patches: int, cd: int) -> int:
    """A no-grad forward: one layer's activation set (an upper bound of its working set) and the
    residual stream, for the decoder over T tokens, or the vision tower over `patches` — they run one
    after the other, so the larger counts."""
    decoder = T * (decoder_layer_bytes(s, cd) + 2 * cd * s.hidden)
    vision = patches * (vision_block_bytes(s, cd) + 2 * cd * s.v_hidden)
    return max(decoder, vision)


def activation_items(cfg, s: Shapes, t: Tokens, cd: int, attn: str) -> tuple[list[Item], dict]:
    ac = cfg.model.activation_checkpointing
    dec = {c: decoder_activations(s, t.student, cd, c) for c in (True, False)}
    vis = {c: vision_activations(s, t.vision_patches, cd, c, False) for c in (True, False)}
    vis_bwd = {c: vision_activations(s, t.vision_patches, cd, c, True) for c in (True, False)}
    label = "checkpointed" if ac else "no checkpointing"
    items = [
        Item("decoder", f"decoder activations ({label}), {t.student:,} tokens", {"update": dec[ac]},
             f"{decoder_layer_bytes(s, cd):,} B per token per layer saved (module docstring)"),
        Item("vision", f"vision activations ({label}), {t.rows} x {t.frames} frames",
             {"update": vis[ac], "vision bwd": vis_bwd[ac]},
             f"{t.vision_patches:,} patches: each of the update's {t.rows} rows carries its prompt's frames; "
             f"{vision_block_bytes(s, cd):,} B per patch per block"),
        Item("no_grad", "no-grad forward working set (one layer)",
             {"rollout": no_grad_transient(s, t.prompts * t.prompt, t.prompts * t.frames * t.patches_per_frame, cd),
              "teacher": no_grad_transient(s, t.teacher, t.vision_patches, cd)}),
    ]
    if attn == "sdpa":   # with padded rows transformers builds a [rows, 1, S, S] bool mask for SDPA
        S = t.prompt + t.completion
        items.append(Item("sdpa_mask", "SDPA padding mask [rows, S, S] bool",
                          {"update": t.rows * S * S, "teacher": t.rows * (S + HINDSIGHT_TOKENS) ** 2}))
    alternatives = {"decoder activations with / without checkpointing": (dec[True], dec[False]),
                    "vision activations with / without checkpointing": (vis_bwd[True], vis[False])}
    return items, alternatives


def loss_path_bytes(s: Shapes, t: Tokens, cd: int, fused: bool) -> dict:
    """The student's loss path at the update (besides lm_head's weight gradient, its own item), and the
    teacher's summary chunk."""
    V, H = s.vocab, s.hidden
    if fused:
        # kernels/linear_ops.py: one [C, V] chunk and grad_W accumulated in fp32 during the forward; for
        # 16-bit weights each chunk's dlogits is upcast ([C, V] fp32) and added in place, and at the end the
        # accumulator is cast to lm_head's gradient in cd: the lm_head item's bytes, counted there.
        upcast = FUSED_CHUNK_TOKENS * V * 4 if cd != 4 else 0
        update = max(V * H * 4 + FUSED_CHUNK_TOKENS * V * cd + upcast, t.N * H * cd)
        teacher = FUSED_CHUNK_TOKENS * V * cd
    else:
        # [N, V] logits in cd; visd_policy_loss(inplace_backward=True) writes dL/dlogits over them, and the
        # lm_head backward makes its weight gradient while they are alive.
        update = t.N * V * cd
        teacher = TEACHER_CHUNK_TOKENS * V * cd
    return {"update": update, "teacher": teacher}


def loss_items(cfg, s: Shapes, t: Tokens, cd: int, fused: bool) -> tuple[list[Item], dict]:
    b = loss_path_bytes(s, t, cd, fused)
    has_teacher = cfg.algorithm.name == "visd" and cfg.visd.lambda0 > 0
    label = (f"fused-linear: [{FUSED_CHUNK_TOKENS}, V] chunk + grad_W fp32" if fused
             else f"[N, V] logits, N = {t.N:,}")
    items = [Item("loss", f"loss path ({label})",
                  {"update": b["update"], "teacher": b["teacher"] if has_teacher else 0}),
             Item("lm_head_grad", "lm_head weight grad, unsharded (root, to the end)",
                  {"update": s.vocab * s.hidden * cd, "vision bwd": s.vocab * s.hidden * cd},
                  "made first in the backward; the root unit reduces it last (the reduce column)")]
    other = loss_path_bytes(s, t, cd, not fused)
    by_kind = {fused: b["update"], not fused: other["update"]}
    return items, {"loss path fused-linear / [N, V] logits": (by_kind[True], by_kind[False])}


def rollout_items(s: Shapes, t: Tokens, cd: int) -> list[Item]:
    per_token = kv_bytes_per_token(s, cd)
    cache = t.rows * (t.prompt + t.completion) * per_token
    prefill_copy = t.prompts * t.prompt * per_token   # the prefill's cache before batch_repeat_interleave(G)
    sampling = t.rows * s.vocab * (cd + 4 + 4)        # logits, fp32 z/T and probabilities of the slow path
    return [Item("kv_cache", f"KV cache: {t.rows} rows x {t.prompt + t.completion:,} tokens ({cd * 8} bit)",
                 {"rollout": cache + prefill_copy}, "+ the prefill's un-repeated copy"),
            Item("sampling", "decode logits and sampling", {"rollout": sampling})]


def plan(cfg, gpus: int, fused: bool, attn: str | None = None) -> dict:
    """Everything the table shows, as numbers (bytes)."""
    config, source = model_config(cfg.model)
    model = meta_model(config)
    u, s = count_units(model, gpus), shapes_of(config)
    cd = 4 if cfg.model.dtype == "float32" else 2        # "auto" and "bfloat16" compute in bf16 on CUDA
    attn = attn or ("sdpa" if cfg.model.attn == "sdpa" else "flash")
    t = token_budget(cfg, s)
    acts, alternatives = activation_items(cfg, s, t, cd, attn)
    loss, loss_alt = loss_items(cfg, s, t, cd, fused)
    items = state_items(cfg, u, gpus) + gather_items(cfg, u, cd) + acts + loss + rollout_items(s, t, cd)
    totals = {p: sum(i.phases.get(p, 0) for i in items) for p in PHASES}
    peak = max(totals.values())
    return dict(source=source, units=u, shapes=s, tokens=t, cd=cd, attn=attn, fused=fused, items=items,
                totals=totals, peak=peak, allowance=ALLOWANCE_GIB * GiB + FRAGMENTATION * peak,
                alternatives={**alternatives, **loss_alt})


# ---------------------------------------------------------------------------- printing
def _gib(b: float) -> str:
    return f"{b / GiB:8.2f}" if b else " " * 8


def render(p: dict, cfg, gpus: int, gpu_mem_gib: float) -> str:
    u, t = p["units"], p["tokens"]
    need = p["peak"] + p["allowance"]
    fits = need <= gpu_mem_gib * GiB
    lines = [
        f"model: {p['source']}",
        f"parameters {u.total:,}: language model {u.language + u.root:,}, vision tower {u.vision:,}; FSDP2 units: "
        f"root {u.root:,}, vision {u.vision:,}, largest decoder layer {u.layer:,}",
        f"{gpus} GPUs, compute {'bf16' if p['cd'] == 2 else 'fp32'}, attention {p['attn']}, "
        f"activation checkpointing {'on' if cfg.model.activation_checkpointing else 'off'}, "
        f"fused-linear {'on' if p['fused'] else 'off'}",
        f"per GPU: {t.prompts} prompt(s) x G={t.group}; prompt {t.prompt:,} tokens ({t.frames} frames x "
        f"{t.visual // t.frames:,} + {TEXT_TOKENS} text, max_prompt_len {cfg.data.max_prompt_len:,}); "
        f"N = {t.N:,} completion tokens; student forward {t.student:,} tokens",
        "",
        f"{'GiB per GPU':54}" + "".join(f"{ph:>11}" for ph in PHASES),
    ]
    for i in p["items"]:
        lines.append(f"{i.name[:54]:54}" + "".join(f"   {_gib(i.phases.get(ph, 0))}" for ph in PHASES))
    lines.append(f"{'total':54}" + "".join(f"   {_gib(p['totals'][ph])}" for ph in PHASES))
    lines += [
        "",
        f"peak {p['peak'] / GiB:.2f} GiB + allowance {p['allowance'] / GiB:.2f} GiB ({ALLOWANCE_GIB} GiB CUDA context, "
        f"NCCL, cuBLAS + {FRAGMENTATION:.0%} fragmentation) = {need / GiB:.2f} GiB of {gpu_mem_gib:g} GiB: "
        + ("FITS" if fits else "DOES NOT FIT"),
        "alternatives (GiB, at their peak): " + "; ".join(f"{k}: {a / GiB:.2f} / {b / GiB:.2f}"
                                                           for k, (a, b) in p["alternatives"].items()),
        "notes:",
    ]
    lines += [f"  {i.name.split(' (')[0].split(':')[0]}: {i.note}" for i in p["items"] if i.note]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from visd_core.config import load_config

    parser = argparse.ArgumentParser(description="Per-GPU memory plan of an RL run (see the module docstring).")
    parser.add_argument("--config", required=True)
    parser.add_argument("--gpus", type=int, required=True, help="world size (FSDP2 shards over all of it)")
    parser.add_argument("--gpu-mem-gb", type=float, required=True, help="memory of one GPU, GiB (80 for H100 80GB)")
    parser.add_argument("--fused-linear", action=argparse.BooleanOptionalAction, default=None,
                        help="plan the kernels.linear_* loss path (default: the config's kernels.fused_linear)")
    parser.add_argument("--attn", choices=("flash", "sdpa"), default=None,
                        help="attention kernel (default: flash unless model.attn = 'sdpa')")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.config, overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fused = args.fused_linear if args.fused_linear is not None else getattr(cfg.kernels, "fused_linear", True)
    p = plan(cfg, args.gpus, fused, args.attn)
    print(render(p, cfg, args.gpus, args.gpu_mem_gb))
    return 0 if p["peak"] + p["allowance"] <= args.gpu_mem_gb * GiB else 1


if __name__ == "__main__":
    sys.exit(main())
