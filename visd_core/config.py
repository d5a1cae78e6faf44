"""Typed run configuration: dataclass defaults < TOML file < `--section.key=value` overrides.

    python train.py --config configs/tiny_synthetic.toml --rollout.group_size=8 --print-config

Every error is a `ValueError` with a one-line reason (unknown keys name the closest valid ones);
`train.py` prints it and exits 2. The resolved config is written next to each run's outputs.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class Job:
    name: str = "tiny_synthetic"
    dump_folder: str = ""            # "" -> runs/<name>; every output of the run goes here
    seed: int = 0
    log_every: int = 1               # steps between console log lines (metrics.jsonl gets every step)


@dataclass
class Model:
    path: str = ""                   # local HF-style checkpoint dir (config.json + *.safetensors); "" = tiny default
    tokenizer: str = ""              # "" = bundled Qwen ranks; or a *.tiktoken file / local HF tokenizer dir
    vocab_size: int = 151936         # embedding rows of Qwen2.5-VL (151,665 tokens padded)
    vocab_subset: str = ""           # tiny model only: "data" or a JSON id list = rows for just those ids
                                     # (visd_core/vocab_subset.py; then vocab_size is the subset's length)
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vision_depth: int = 1
    vision_hidden_size: int = 32
    vision_heads: int = 2
    tie_embeddings: bool = False     # lm_head shares the embedding (Qwen2.5-VL-3B does; halves 151,936-row state)
    attn: Literal["auto", "sdpa", "flash_attention_2", "eager"] = "auto"   # auto: FA2 on CUDA if it imports
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"                # auto: bf16 on CUDA, fp32 on CPU
    activation_checkpointing: bool = False


@dataclass
class Data:
    train_path: str = "data/synthetic/train.jsonl"
    val_path: str = "data/synthetic/val.jsonl"
    video_root: str = ""             # "" = the JSONL's folder
    num_frames: int = 16             # frames sampled per video (papers: 16)
    fps: float = 0.0                 # > 0: sample by fps instead, within [min_frames, max_frames]
    min_frames: int = 4
    max_frames: int = 32
    min_pixels: int = 3136           # 56*56, Qwen2.5-VL's processor default
    max_pixels: int = 401408         # training pixel budget (visd Table 8)
    max_prompt_len: int = 16384      # visd Table 8
    shuffle: bool = True


@dataclass
class Training:
    stage: Literal["sft", "rl", "sft_then_rl"] = "sft_then_rl"
    sft_steps: int = 0
    rl_steps: int = 1200             # VISD evaluates the student at step 1200 (visd §4.1)
    batch_size: int = 1              # prompts per rank per step (visd Table 8: per-device batch 1)
    rl_batch_size: int = 0           # prompts per rank per RL step; 0 = batch_size
    grad_accum: int = 1
    sft_teacher_view_frac: float = 0.0   # SFT examples shown in the teacher's view (hindsight block);
                                         # > 0 only for models that never saw one (the tiny default)


@dataclass
class Optim:
    lr: float = 1e-6                 # visd Table 8
    rl_lr: float = 0.0               # learning rate of the RL stage; 0 = same as lr
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 5.0
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    # The RL stage of sft_then_rl may want its own shape (a from-scratch SFT decays, RL stays flat).
    rl_warmup_steps: int = -1        # -1 = same as warmup_steps
    rl_schedule: Literal["", "constant", "cosine"] = ""    # "" = same as schedule
    max_nonfinite_in_a_row: int = 3  # abort after this many skipped (non-finite) updates in a row


@dataclass
class Rollout:
    group_size: int = 4              # G (visd Table 8)
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 768        # visd Table 8


@dataclass
class Algorithm:
    name: Literal["grpo", "visd", "gspo", "visioncoach"] = "visd"
    adv_eps: float = 1e-4            # ε of visd eq. 14
    clip_low: float = 0.2            # ε_pg of visd eq. 16
    clip_high: float = 0.2
    loss_agg: Literal["seq_mean_token_mean", "token_mean"] = "seq_mean_token_mean"
    kl_beta: float = 0.0             # k3 KL to a frozen reference policy (visioncoach App. B: 0.04; VISD none)
    # GSPO's sequence-ratio clip range (gspo/visioncoach): the GSPO paper's 3e-4 / 4e-4 (visioncoach gives none)
    gspo_clip_low: float = 3e-4
    gspo_clip_high: float = 4e-4
    updates_per_batch: int = 1       # policy updates per rollout batch (1 in the paper recipe)


@dataclass
class Visd:
    top_k: int = 16                  # K of visd eq. 3 (0 = sampled-token variant)
    eps_w: float = 0.2               # token weight clip [1-ε_w, 1+ε_w] = [0.8, 1.2] (visd eq. 6)
    lambda0: float = 0.5             # initial mixing coefficient λ (visd eq. 7)
    lambda_steps: int = 600          # λ anneals linearly to 0 over these steps
    feedback: bool = True            # False: answer-only teacher (visd Table 5 "w/o Feedback")


@dataclass
class Teacher:
    kind: Literal["ema", "current", "sync"] = "ema"
    ema_rate: float = 0.01           # θ̄ ← (1 − rate)·θ̄ + rate·θ (visd eq. 8, Table 8)
    sync_every: int = 10             # Sync-N teacher (visd §D.4)


@dataclass
class Reward:
    # Component weights α_k of visd eq. 10; a component counts only where the task supports it.
    w_ans: float = 1.0               # answer accuracy (MCQ exact / ROUGE)
    w_fmt: float = 1.0               # format
    w_ans_tmp: float = 1.0           # answer temporal IoU
    w_ans_spa: float = 1.0           # answer spatial IoU
    w_thk_tmp: float = 1.0           # thinking temporal (visd eq. 11-12)
    w_thk_spa: float = 1.0           # thinking spatial (visd eq. 13 / visioncoach eq. 8)
    sigma_max: float = 4.0           # σ = sigma_max·(1 − p) while p < sigma_switch, then sigma_min
    sigma_min: float = 1.0
    sigma_switch: float = 0.75
    sigma_steps: int = 0             # horizon of p in σ: the paper's run (one epoch); 0 = the RL stage's length
    tau: float = 1.0                 # temporal gate |t_pred − t_gt| ≤ τ (seconds) for spatial claims
    spatial: Literal["max_iou", "object_aware"] = "max_iou"   # visd eq. 13 | visioncoach eq. 8
    # An object with several GT boxes on a frame (instances): "max" over them, as visd eq. 13 and
    # visioncoach eq. 8 write it, or "mean" (every instance must be covered), the released code's.
    multi_instance: Literal["max", "mean"] = "max"


@dataclass
class Judge:
    kind: Literal["rule", "http"] = "rule"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "gpt-5.4"           # visd §C.1 uses GPT-5.4
    api_key_env: str = "VISD_JUDGE_API_KEY"   # name of the env var holding the key; the key is never stored
    temperature: float = 0.0
    max_tokens: int = 256
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"   # GPT-5.x: the latter
    # Reasoning models (GPT-5.x) spend hidden reasoning tokens from max_tokens and can return empty
    # content when it runs out; "" = not sent (servers that do not reason reject the field).
    reasoning_effort: Literal["", "none", "minimal", "low", "medium", "high"] = ""
    timeout_s: float = 30.0          # per call
    deadline_s: float = 120.0        # per batch; samples still pending fall back to the rule judge
    max_retries: int = 3
    concurrency: int = 8
    cache_dir: str = ""              # "" = <dump_folder>/judge_cache
    cache_max_mb: int = 256
    # Over the last steps, more than this share of samples falling back to the rule judge is loud
    # (FallbackMonitor): "warn" once per crossing, or "abort" the run.
    max_fallback_frac: float = 0.5
    on_fallback: Literal["warn", "abort"] = "warn"


# The visual-prompt kinds of visioncoach App. C.4 (the VP-Selector's label set), in the paper's order.
VISUAL_PROMPT_KINDS = ("api_prompt", "circle", "darken", "numpro", "raw")


@dataclass
class VisionCoach:
    # k of Algorithm 1: sample i is hard when its mean reward R̄ᵢ < k. The paper's 2.21 is Open-o3-Video's
    # mean reward (App. B), a property of that model and reward scale; "batch_mean" takes this step's mean
    # reward over every rank's rollouts instead, which adapts to any policy and reward weights, and
    # "batch_quantile:q" the q-quantile of this step's R̄ᵢ over every rank (Table 7's k = 25% / 50% / 75%).
    hard_threshold: float | str = 2.21
    sd_weight: float = 0.1           # α of visioncoach eq. 2
    sd_top_n: int = 2                # N of TopN (Alg. 1 line 15; App. B: top 2)
    # What the distilled trajectories are conditioned on: eq. 1's prompted input (x′, q′), or the raw
    # (x, q) — the more direct way to internalize the prompt, an ablation.
    sd_condition: Literal["prompted", "raw"] = "prompted"
    # Who picks the prompt for a hard sample (Table 13): "model" (the trained VP-Selector at
    # selector_path), "fixed:<kind>" (one kind for all), or "gating" (frame numbers when the sample's
    # temporal reward is below the batch mean, darken when its spatial one is; App. D.3).
    selector: str = "gating"
    selector_path: str = ""          # a directory written by `python -m visd_core.selector train`
    clip_path: str = ""              # local CLIP checkpoint for the api_prompt kind ("" = kind unavailable)


@dataclass
class Eval:
    # Validation during training (visd_core/eval/validation.py): greedy answers on the first num_samples
    # records of data.val_path, logged as val/* every `every` steps, at the start of RL and at the end.
    every: int = 0                   # steps between validations (0 = off)
    num_samples: int = 32            # validation records per evaluation, split over ranks
    batch_size: int = 8              # prompts decoded together per rank
    max_new_tokens: int = 0          # 0 = rollout.max_new_tokens


@dataclass
class Checkpoint:
    every: int = 100                 # steps between checkpoints (0 = only at the end)
    keep: int = 2                    # keep the last k complete checkpoints (>= 2)
    resume: str = "none"             # "none" | "auto" | path to a step folder
    export: bool = True              # export the final policy as a Hugging Face directory


@dataclass
class Parallel:
    backend: Literal["auto", "gloo", "nccl"] = "auto"   # auto: nccl on CUDA, gloo on CPU


@dataclass
class Kernels:
    backend: Literal["auto", "reference", "triton", "cpp"] = "auto"
    fused_linear: bool = True        # SFT loss, teacher replay, policy loss from hidden states (kernels.linear_*):
                                     # no [N, V] logits; false: the logits path, kept to compare against


@dataclass
class Report:
    credit_every: int = 10           # RL steps between token-credit records in <dump_folder>/credit/ (0 = off)
    credit_rollouts: int = 4         # rollouts recorded per credit step, from all ranks (both advantage signs)


@dataclass
class Metrics:
    tensorboard: bool = False        # also write the metrics.jsonl scalars to <dump_folder>/tb/ (needs tensorboard)
    wandb: bool = False              # also log them to an offline wandb run in <dump_folder>/wandb/ (needs wandb)


@dataclass
class Config:
    job: Job = field(default_factory=Job)
    model: Model = field(default_factory=Model)
    data: Data = field(default_factory=Data)
    training: Training = field(default_factory=Training)
    optim: Optim = field(default_factory=Optim)
    rollout: Rollout = field(default_factory=Rollout)
    algorithm: Algorithm = field(default_factory=Algorithm)
    visd: Visd = field(default_factory=Visd)
    teacher: Teacher = field(default_factory=Teacher)
    reward: Reward = field(default_factory=Reward)
    judge: Judge = field(default_factory=Judge)
    visioncoach: VisionCoach = field(default_factory=VisionCoach)
    eval: Eval = field(default_factory=Eval)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    parallel: Parallel = field(default_factory=Parallel)
    kernels: Kernels = field(default_factory=Kernels)
    report: Report = field(default_factory=Report)
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def dump_folder(self) -> Path:
        return Path(self.job.dump_folder or f"runs/{self.job.name}")


# ---------------------------------------------------------------------------- range checks
# (section, key) -> (predicate, what it must be). Checked after every load and override.
def _prob(v):
    return 0.0 <= v <= 1.0


_RANGES = {
    ("job", "log_every"): (lambda v: v >= 1, "an integer >= 1"),
    ("model", "vocab_size"): (lambda v: v > 0, "positive"),
    ("model", "hidden_size"): (lambda v: v > 0, "positive"),
    ("model", "num_layers"): (lambda v: v > 0, "positive"),
    ("model", "num_heads"): (lambda v: v > 0, "positive"),
    ("model", "num_kv_heads"): (lambda v: v > 0, "positive"),
    ("model", "intermediate_size"): (lambda v: v > 0, "positive"),
    ("model", "vision_depth"): (lambda v: v > 0, "positive"),
    ("model", "vision_hidden_size"): (lambda v: v > 0, "positive"),
    ("model", "vision_heads"): (lambda v: v > 0, "positive"),
    ("data", "num_frames"): (lambda v: v > 0, "positive"),
    ("data", "fps"): (lambda v: v >= 0, ">= 0 (0 = fixed frame count)"),
    ("data", "min_frames"): (lambda v: v > 0, "positive"),
    ("data", "max_frames"): (lambda v: v > 0, "positive"),
    ("data", "min_pixels"): (lambda v: v > 0, "positive"),
    ("data", "max_pixels"): (lambda v: v > 0, "positive"),
    ("data", "max_prompt_len"): (lambda v: v > 0, "positive"),
    ("training", "sft_steps"): (lambda v: v >= 0, ">= 0"),
    ("training", "rl_steps"): (lambda v: v >= 0, ">= 0"),
    ("training", "batch_size"): (lambda v: v > 0, "positive"),
    ("training", "rl_batch_size"): (lambda v: v >= 0, ">= 0 (0 = training.batch_size)"),
    ("training", "grad_accum"): (lambda v: v > 0, "positive"),
    ("training", "sft_teacher_view_frac"): (_prob, "a fraction in [0, 1]"),
    ("optim", "lr"): (lambda v: v >= 0, ">= 0"),
    ("optim", "rl_lr"): (lambda v: v >= 0, ">= 0 (0 = same as optim.lr)"),
    ("optim", "weight_decay"): (lambda v: v >= 0, ">= 0"),
    ("optim", "beta1"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim", "beta2"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim", "eps"): (lambda v: v > 0, "positive"),
    ("optim", "max_grad_norm"): (lambda v: v > 0, "positive"),
    ("optim", "warmup_steps"): (lambda v: v >= 0, ">= 0"),
    ("optim", "rl_warmup_steps"): (lambda v: v >= -1, ">= 0, or -1 (= optim.warmup_steps)"),
    ("optim", "max_nonfinite_in_a_row"): (lambda v: v >= 1, ">= 1"),
    ("rollout", "group_size"): (lambda v: v >= 2, ">= 2 (group advantages need a group)"),
    ("rollout", "temperature"): (lambda v: v > 0, "positive"),
    ("rollout", "top_p"): (lambda v: 0 < v <= 1, "a probability in (0, 1]"),
    ("rollout", "max_new_tokens"): (lambda v: v > 0, "positive"),
    ("algorithm", "adv_eps"): (lambda v: v > 0, "positive"),
    ("algorithm", "clip_low"): (lambda v: 0 <= v < 1, "a clip bound in [0, 1)"),
    ("algorithm", "clip_high"): (lambda v: v >= 0, "a clip bound >= 0"),
    ("algorithm", "kl_beta"): (lambda v: v >= 0, ">= 0"),
    ("algorithm", "updates_per_batch"): (lambda v: v >= 1, ">= 1"),
    ("visd", "top_k"): (lambda v: v >= 0, "K >= 0 (0 = sampled-token variant)"),
    ("visd", "eps_w"): (lambda v: 0 <= v < 1, "a clip bound in [0, 1)"),
    ("visd", "lambda0"): (_prob, "λ in [0, 1]"),
    ("visd", "lambda_steps"): (lambda v: v >= 0, ">= 0"),
    ("teacher", "ema_rate"): (lambda v: 0 < v <= 1, "a rate in (0, 1]"),
    ("teacher", "sync_every"): (lambda v: v >= 1, ">= 1"),
    ("reward", "sigma_max"): (lambda v: v > 0, "positive"),
    ("reward", "sigma_min"): (lambda v: v > 0, "positive"),
    ("reward", "sigma_switch"): (_prob, "a training-progress fraction in [0, 1]"),
    ("reward", "sigma_steps"): (lambda v: v >= 0, ">= 0 (0 = training.rl_steps)"),
    ("reward", "tau"): (lambda v: v >= 0, ">= 0 seconds"),
    ("judge", "temperature"): (lambda v: v >= 0, ">= 0"),
    ("judge", "max_tokens"): (lambda v: v > 0, "positive"),
    ("judge", "timeout_s"): (lambda v: v > 0, "positive"),
    ("judge", "deadline_s"): (lambda v: v > 0, "positive"),
    ("judge", "max_retries"): (lambda v: v >= 0, ">= 0"),
    ("judge", "concurrency"): (lambda v: v >= 1, ">= 1"),
    ("judge", "cache_max_mb"): (lambda v: v >= 0, ">= 0"),
    ("judge", "max_fallback_frac"): (_prob, "a fraction in [0, 1]"),
    ("visioncoach", "sd_weight"): (lambda v: v >= 0, ">= 0"),
    ("visioncoach", "sd_top_n"): (lambda v: v >= 1, ">= 1"),
    ("algorithm", "gspo_clip_low"): (lambda v: 0 <= v < 1, "a clip bound in [0, 1)"),
    ("algorithm", "gspo_clip_high"): (lambda v: v >= 0, "a clip bound >= 0"),
    ("eval", "every"): (lambda v: v >= 0, ">= 0 (0 = no validation)"),
    ("eval", "num_samples"): (lambda v: v >= 1, ">= 1"),
    ("eval", "batch_size"): (lambda v: v >= 1, ">= 1"),
    ("eval", "max_new_tokens"): (lambda v: v >= 0, ">= 0 (0 = rollout.max_new_tokens)"),
    ("checkpoint", "every"): (lambda v: v >= 0, ">= 0"),
    ("checkpoint", "keep"): (lambda v: v >= 2, ">= 2 (a crash while writing must leave one complete checkpoint)"),
    ("report", "credit_every"): (lambda v: v >= 0, ">= 0 (0 = no token-credit records)"),
    ("report", "credit_rollouts"): (lambda v: v >= 1, ">= 1"),
}
for _k in ("w_ans", "w_fmt", "w_ans_tmp", "w_ans_spa", "w_thk_tmp", "w_thk_spa"):
    _RANGES[("reward", _k)] = (lambda v: v >= 0, ">= 0")


def _cross_checks(cfg: Config) -> None:
    if cfg.data.min_frames > cfg.data.max_frames:
        raise ValueError(f"data.min_frames ({cfg.data.min_frames}) > data.max_frames ({cfg.data.max_frames})")
    if cfg.data.min_pixels > cfg.data.max_pixels:
        raise ValueError(f"data.min_pixels ({cfg.data.min_pixels}) > data.max_pixels ({cfg.data.max_pixels})")
    if cfg.model.num_heads % cfg.model.num_kv_heads:
        raise ValueError(f"model.num_heads ({cfg.model.num_heads}) must be a multiple of model.num_kv_heads "
                         f"({cfg.model.num_kv_heads})")
    if cfg.model.hidden_size % cfg.model.num_heads:
        raise ValueError(f"model.hidden_size ({cfg.model.hidden_size}) must be a multiple of model.num_heads")
    if cfg.reward.sigma_min > cfg.reward.sigma_max:
        raise ValueError(f"reward.sigma_min ({cfg.reward.sigma_min}) > reward.sigma_max ({cfg.reward.sigma_max})")
    vc = cfg.visioncoach
    if isinstance(vc.hard_threshold, str) and vc.hard_threshold != "batch_mean":
        q = vc.hard_threshold.removeprefix("batch_quantile:")
        try:
            ok = q != vc.hard_threshold and 0.0 <= float(q) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"visioncoach.hard_threshold = {vc.hard_threshold!r}: must be a number, \"batch_mean\" "
                             "or \"batch_quantile:q\" with q in [0, 1]")
    fixed = vc.selector.removeprefix("fixed:")
    if vc.selector not in ("model", "gating") and not (vc.selector.startswith("fixed:") and fixed in VISUAL_PROMPT_KINDS):
        raise ValueError(f"visioncoach.selector = {vc.selector!r}: must be 'model', 'gating' or 'fixed:<kind>' "
                         f"with a kind in {', '.join(VISUAL_PROMPT_KINDS)}")
    if cfg.algorithm.name == "visioncoach" and vc.selector == "model" and not vc.selector_path:
        raise ValueError("visioncoach.selector = 'model' needs visioncoach.selector_path (a trained VP-Selector "
                         "directory: python -m visd_core.selector train)")
    if cfg.algorithm.name == "visioncoach" and fixed == "api_prompt" and not vc.clip_path:
        raise ValueError("visioncoach.selector = 'fixed:api_prompt' needs visioncoach.clip_path (a local CLIP "
                         "checkpoint directory)")
    if cfg.eval.every > 0 and not cfg.data.val_path:
        raise ValueError("eval.every > 0 needs data.val_path (validation records)")
    if cfg.checkpoint.resume not in ("none", "auto") and not cfg.checkpoint.resume.strip():
        raise ValueError("checkpoint.resume must be 'none', 'auto' or a checkpoint step folder")


# ---------------------------------------------------------------------------- typing
def _coerce(section: str, key: str, value, hint):
    """Return `value` as type `hint`, or raise ValueError naming the key and the expected type."""
    name = f"{section}.{key}"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):     # e.g. float | Literal["batch_mean"]: the first that fits
        errors = []
        for member in typing.get_args(hint):
            try:
                return _coerce(section, key, value, member)
            except ValueError as e:
                errors.append(str(e).removeprefix(f"{name} ").removeprefix(f"= {value!r} "))
        raise ValueError(f"{name} = {value!r}: " + "; or ".join(errors))
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ValueError(f"{name} = {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            return float(value)
        raise ValueError(f"{name} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{name} must be a string, got {value!r}")
    raise AssertionError(f"unsupported config type {hint} for {name}")


def _closest(word: str, candidates) -> str:
    near = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(near)}?)" if near else f" (valid: {', '.join(sorted(candidates))})"


def _set(cfg: Config, section: str, key: str, value) -> None:
    sections = {f.name for f in dataclasses.fields(Config)}
    if section not in sections:
        raise ValueError(f"unknown config section [{section}]{_closest(section, sections)}")
    obj = getattr(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if key not in hints:
        raise ValueError(f"unknown key {section}.{key}{_closest(key, hints)}")
    setattr(obj, key, _coerce(section, key, value, hints[key]))


def validate(cfg: Config) -> Config:
    for (section, key), (ok, what) in _RANGES.items():
        v = getattr(getattr(cfg, section), key)
        if not ok(v):
            raise ValueError(f"{section}.{key} = {v!r} is out of range: must be {what}")
    _cross_checks(cfg)
    return cfg


# ---------------------------------------------------------------------------- loading
def _parse_value(text: str):
    """CLI values are TOML literals (1e-6, true, "x", [1, 2]); anything else is a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_toml(cfg: Config, data: dict, source: str) -> None:
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ValueError(f"{source}: top-level key {section!r} must be a [section] table"
                             f"{_closest(section, [f.name for f in dataclasses.fields(Config)])}")
        for key, value in table.items():
            try:
                _set(cfg, section, key, value)
            except ValueError as e:
                raise ValueError(f"{source}: {e}") from None


def parse_overrides(args: list[str]) -> list[tuple[str, str, object]]:
    out = []
    for a in args:
        if not a.startswith("--") or "=" not in a or "." not in a.split("=", 1)[0]:
            raise ValueError(f"bad override {a!r}: expected --section.key=value")
        lhs, rhs = a[2:].split("=", 1)
        section, key = lhs.split(".", 1)
        out.append((section, key, _parse_value(rhs)))
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults < TOML at `path` (which may `include = ["base.toml"]`) < CLI overrides; validated."""
    cfg = Config()
    if path is not None:
        for p in _include_chain(Path(path)):
            data = _read_toml(p)
            data.pop("include", None)
            apply_toml(cfg, data, str(p))
    for section, key, value in parse_overrides(overrides or []):
        try:
            _set(cfg, section, key, value)
        except ValueError as e:
            raise ValueError(f"override --{section}.{key}: {e}") from None
    return validate(cfg)


def _read_toml(p: Path) -> dict:
    if not p.is_file():
        raise ValueError(f"config file not found: {p}")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: invalid TOML: {e}") from None


def _include_chain(p: Path, seen: tuple[Path, ...] = ()) -> list[Path]:
    """Files to apply in order: included bases first (ablation files override a base recipe)."""
    p = p.resolve()
    if p in seen:
        raise ValueError(f"config include cycle at {p}")
    inc = _read_toml(p).get("include", [])
    if isinstance(inc, str):
        inc = [inc]
    if not isinstance(inc, list) or not all(isinstance(i, str) for i in inc):
        raise ValueError(f"{p}: 'include' must be a path or a list of paths")
    chain = []
    for i in inc:
        chain += _include_chain(p.parent / i, seen + (p,))
    return chain + [p]


# ---------------------------------------------------------------------------- writing
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise AssertionError(f"cannot write {v!r} as TOML")


def to_toml(cfg: Config) -> str:
    lines = []
    for f in dataclasses.fields(Config):
        lines.append(f"[{f.name}]")
        for k, v in dataclasses.asdict(getattr(cfg, f.name)).items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def save_config(cfg: Config, folder: str | Path) -> Path:
    """Write the resolved config as <folder>/config.toml (the judge's API key is never in it)."""
    out = Path(folder) / "config.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_toml(cfg))
    return out
