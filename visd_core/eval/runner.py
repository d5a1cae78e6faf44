"""The evaluation runner: a trained policy answers every record of a benchmark, the project's
verifier scores each answer, and the benchmark's metrics are summed up.

    python -m visd_core.eval run --model runs/tiny_synthetic/export --data data/synthetic/val.jsonl \\
        --out runs/tiny_synthetic/eval_val [--num-frames 16 --max-new-tokens 768 --batch-size 4 \\
        --temperature 0 --limit N --video-root DIR --format auto|jsonl|vstar|charades]

--model   an exported directory (config.json + safetensors, visd_core/model/export.py), or a
          checkpoint step folder `runs/X/checkpoints/step_NNNNNN`: the model is rebuilt from
          `runs/X/config.toml` and its DCP model state loaded on this one process. The pixel budget
          comes with the model (preprocessor_config.json, or the run's [data]); so do the frame
          count (--num-frames overrides it) and, for a checkpoint, the reward settings.
--data    the project's JSONL, V-STaR's annotation JSON or Charades-STA's `sid s e##query` lines
          (formats.py; --format auto picks by extension, then content).
--out     predictions.jsonl: one row per scored record — id, task, output, truncated, the parsed
          answer / interval / boxes / timed boxes, the verifier's components, reward and
          answer_correct, format_ok, temporal_iou, spatial_iou (and `vstar` when tagged);
          summary.json: summary.py.

Greedy by default (--temperature 0: the argmax at every step); --temperature T > 0 samples from
softmax(z / T) over the whole vocabulary with a generator seeded 0. Resumable: a rerun skips ids
already in predictions.jsonl and appends; every row is flushed as it is scored, so a kill loses at
most the batch in flight (a half-written last line is dropped on the next start). A record whose
video is missing or unreadable (or whose prompt is too long) is skipped, counted and listed under
summary.json's `skipped`; nothing aborts the run.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict
from tqdm import tqdm

from visd_core import checkpoint as ckpt
from visd_core.config import Data as DataCfg, Model as ModelCfg, Reward as RewardCfg, Rollout as RolloutCfg
from visd_core.config import load_config
from visd_core.data.model_inputs import PromptSample, collate, load_prompt
from visd_core.data.schema import TEMPORAL_TASKS
from visd_core.eval import charades, summary, vstar
from visd_core.eval.formats import EvalItem, read_eval_data
from visd_core.model.build import build_unsharded, compute_dtype
from visd_core.rewards.iou import interval_iou
from visd_core.rewards.parse import answer_or_text, parse_claims, parse_completion
from visd_core.rewards.reward import score_group
from visd_core.rollout import generate
from visd_core.tokenizer import QwenTokenizer, load_tokenizer
from visd_core.vocab_subset import SubsetTokenizer, with_folder_subset

log = logging.getLogger(__name__)

PREDICTIONS, SUMMARY = "predictions.jsonl", "summary.json"
SAMPLING_SEED = 0


@dataclass
class Policy:
    model: torch.nn.Module | None
    tok: QwenTokenizer | SubsetTokenizer
    data: DataCfg                  # frames and pixel budget the model was trained with
    reward: RewardCfg              # the verifier's settings (the run's, for a checkpoint)
    device: torch.device
    dtype: torch.dtype             # compute dtype (autocast when not fp32)


# ---------------------------------------------------------------------------- the model
def load_checkpoint_model(step: Path, device: torch.device):
    """(model, run config, tokenizer) from a DCP step folder whose run config is at step/../../config.toml."""
    if not (step / ckpt.MARKER).is_file():
        raise ValueError(f"--model {step}: no {ckpt.MARKER} marker (an incomplete checkpoint, or not one)")
    run_cfg = step.parent.parent / "config.toml"
    if not run_cfg.is_file():
        raise ValueError(f"--model {step}: its run's config {run_cfg} does not exist")
    cfg = load_config(run_cfg)
    tok = with_folder_subset(load_tokenizer(cfg.model.tokenizer), step.parent.parent)
    model = build_unsharded(cfg.model, seed=cfg.job.seed, device=device, weights=False, tok=tok)
    state = {"model": get_model_state_dict(model)}       # the trainer saved get_state_dict(model, opt)["model"]
    with warnings.catch_warnings():      # without a process group DCP warns that it loads in one process: it is meant
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(step))        # reshards whatever world size wrote it onto this process
    set_model_state_dict(model, state["model"])
    return model, cfg, tok


def load_policy(path: str, device: torch.device | None = None) -> Policy:
    """The policy at `path`: an exported directory or a checkpoint step folder (module docstring)."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    p = Path(path)
    if (p / "config.json").is_file():
        model = build_unsharded(ModelCfg(path=str(p)), device=device)
        pre_path = p / "preprocessor_config.json"
        pre = json.loads(pre_path.read_text()) if pre_path.is_file() else {}
        data = DataCfg(min_pixels=pre.get("min_pixels", DataCfg.min_pixels),
                       max_pixels=pre.get("max_pixels", DataCfg.max_pixels))
        policy = Policy(model, with_folder_subset(load_tokenizer(str(p)), p), data, RewardCfg(), device, compute_dtype("auto", device))
    elif p.is_dir() and p.name.startswith("step_"):
        model, cfg, tok = load_checkpoint_model(p, device)
        policy = Policy(model, tok, cfg.data, cfg.reward, device,
                        compute_dtype(cfg.model.dtype, device))
    else:
        raise ValueError(f"--model {path}: neither an exported model directory (config.json) nor a checkpoint "
                         "step folder (runs/X/checkpoints/step_NNNNNN)")
    policy.model.eval()
    return policy


def generate_texts(policy: Policy, samples: list[PromptSample], rollout: RolloutCfg,
                   generator: torch.Generator | None) -> list[tuple[str, bool]]:
    """(completion text, hit max_new_tokens) for each prompt, decoded together."""
    b = collate([(s.prompt_ids, [], s) for s in samples], policy.tok.pad_id)
    b = replace(b, **{k: v.to(policy.device) for k, v in vars(b).items() if isinstance(v, torch.Tensor)})
    mixed = policy.dtype != torch.float32
    with torch.autocast(policy.device.type, dtype=policy.dtype) if mixed else nullcontext():
        roll = generate(policy.model, b, rollout, group_size=1, stop_ids=policy.tok.eos_ids, pad_id=policy.tok.pad_id,
                        generator=generator)
    return [(policy.tok.decode([t for t in row if t not in policy.tok.eos_ids]), bool(tr))
            for row, tr in zip(roll.rows(), roll.truncated.tolist())]


# ---------------------------------------------------------------------------- one row
def score_row(item: EvalItem, sample: PromptSample, text: str, truncated: bool, reward: RewardCfg) -> dict:
    rec = item.record
    res = score_group(rec, [text], sample.frame_size, 1.0, reward, truncated=[truncated])[0]   # σ at its final value
    c, lenient = parse_completion(text), answer_or_text(text)    # benchmarks also read untagged answers
    interval = charades.segment_of_output(text)
    temporal = None
    if rec.task in TEMPORAL_TASKS and rec.window is not None:
        temporal = interval_iou(interval, rec.window) if interval is not None else 0.0
    spatial = None
    if item.vstar is not None and item.vstar["part"] == "where":
        gt = [(k.time, box) for k in rec.key_frames for boxes in rec.boxes_at(k.idx).values() for box in boxes]
        spatial = vstar.where_iou(text, gt, sample.frame_size)
    elif rec.task == "visual_qa":
        spatial = res.components["ans_spa"]
    row = {"id": rec.id, "task": rec.task, "output": text, "truncated": truncated,
           "answer": c.answer, "interval": list(interval) if interval is not None else None,
           "boxes": [list(b) for b in c.answer_boxes],
           "timed_boxes": [[cl.time, list(b)] for cl in parse_claims(lenient) if cl.time is not None
                           for b in cl.boxes],
           "components": res.components, "reward": res.total, "answer_correct": res.diagnosis.answer_correct,
           "format_ok": res.diagnosis.format_ok, "temporal_iou": temporal, "spatial_iou": spatial,
           "frame_size": list(sample.frame_size)}
    if item.vstar is not None:
        row["vstar"] = item.vstar
    return row


# ---------------------------------------------------------------------------- the run
def read_predictions(path: Path) -> dict[str, dict]:
    """Rows already written, by id. A last line cut off by a kill is removed from the file."""
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        keep = raw.rfind(b"\n") + 1
        log.warning("%s: dropping a half-written last line (%d bytes)", path, len(raw) - keep)
        with open(path, "r+b") as f:
            f.truncate(keep)
        raw = raw[:keep]
    rows = {}
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a prediction row ({e.msg}); move the file away to "
                                 "start over") from None
            rows[row["id"]] = row
    return rows


def run(model: str, data: str, out: str, *, num_frames: int | None = None, max_new_tokens: int = 768,
        batch_size: int = 4, temperature: float = 0.0, limit: int = 0, video_root: str | None = None,
        fmt: str = "auto", progress: bool = True) -> dict:
    """Evaluate, write predictions.jsonl and summary.json under `out`; return the summary."""
    if min(batch_size, max_new_tokens, num_frames or 1) < 1 or temperature < 0 or limit < 0:
        raise ValueError("need --batch-size, --max-new-tokens, --num-frames >= 1 and --temperature, --limit >= 0")
    ds = read_eval_data(data, fmt, video_root)
    items = ds.items[:limit] if limit else ds.items
    skipped = {k: list(v) for k, v in ds.skipped.items()}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path = out_dir / PREDICTIONS
    done = read_predictions(pred_path)
    todo = [it for it in items if it.record.id not in done]
    settings = {"model": model, "data": data, "format": ds.format,
                "generation": {"temperature": temperature, "max_new_tokens": max_new_tokens,
                               "num_frames": num_frames}}        # None: the model's own frame count
    if done and (out_dir / SUMMARY).is_file():
        before = json.loads((out_dir / SUMMARY).read_text()).get("generation")
        if before != settings["generation"]:
            log.warning("resuming %s with generation settings %s; its earlier rows used %s", pred_path,
                        settings["generation"], before)

    if todo:
        policy = load_policy(model)
        data_cfg = policy.data if num_frames is None else replace(policy.data, num_frames=num_frames, fps=0.0)
        rollout = RolloutCfg(group_size=1, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens)
        gen = torch.Generator(policy.device).manual_seed(SAMPLING_SEED) if temperature > 0 else None
        with open(pred_path, "a", encoding="utf-8") as f, \
                tqdm(total=len(todo), desc="eval", unit="record", disable=not progress) as bar:
            for i in range(0, len(todo), batch_size):
                batch = []
                for it in todo[i:i + batch_size]:
                    if not os.path.isfile(it.record.video_path):
                        skipped.setdefault("missing_video", []).append(it.record.id)
                        continue
                    try:
                        batch.append((it, load_prompt(it.record, data_cfg, policy.tok)))
                    except ValueError as e:         # SampleError: unreadable video, prompt too long
                        log.warning("skipped %s: %s", it.record.id, e)
                        skipped.setdefault(getattr(e, "reason", "bad_prompt"), []).append(it.record.id)
                if batch:
                    texts = generate_texts(policy, [s for _, s in batch], rollout, gen)
                    for (it, sample), (text, truncated) in zip(batch, texts):
                        row = score_row(it, sample, text, truncated, policy.reward)
                        f.write(json.dumps(row) + "\n")
                        f.flush()
                        done[row["id"]] = row
                bar.update(len(todo[i:i + batch_size]))

    rows = [done[it.record.id] for it in items if it.record.id in done]
    result = summary.summarize(rows, skipped, len(items), settings)
    tmp = out_dir / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out_dir / SUMMARY)
    return result
