"""Proxy reasoners: who answers a visual-prompted input when the VP-Selector's labels are built
(visioncoach §3.3 "obtain reasoning outputs y_k = R(x'_k, q) using multiple proxy reasoners", App. C.2).

    reasoner = HTTPReasoner("http://host:8000/v1", "gpt-4o", api_key_env="OPENAI_API_KEY")
    reasoner = CheckpointReasoner(Model(path="runs/x/export"), cfg.data)       # a local policy, greedy
    replies = reasoner.answer([ProxyJob(record, "darken", decode_frames(record, cfg.data)), ...])

Every reasoner answers in the project's grounded format, `<think>... <obj>NAME</obj><box>[x1,y1,x2,y2]
</box>at<t>T</t>s ...</think><answer>...</answer>`, with boxes in pixels of the frames it was shown
(`ProxyReply.frame_size`), so the verifier scores it like a rollout. A reply that cannot be had
(an endpoint fault after retries, an unreadable sample) comes back with `text=None` and its cause,
counted in `reasoner.failures`; nothing here raises on it.

- HTTPReasoner: an OpenAI-compatible endpoint. The prompted KEY frames go as PNG data-URL image
  parts (resized under the data's pixel budget, as the policy would see them) with the hinted
  question and Figure 9's instructions, adapted from its JSON output to our tags. The transport is
  the judge's (judge/transport.py: kept-alive connections, per-call timeout, batch deadline,
  retries with backoff on timeouts / connection errors / 429 / 5xx); replies are cached on disk
  keyed by the request body (judge/cache.py), so a rerun pays nothing for what it has seen.
  A 200 whose message holds no <answer>...</answer> is unusable ("bad_reply"): Figure 9 makes the
  format mandatory, and a refusal or an off-format essay says nothing about the visual prompt.
- CheckpointReasoner: a local policy directory (config.json + safetensors, as model/export.py
  writes it) or the tiny model of a [model] config; greedy decoding on the full prompted input of
  the policy (load_prompt(..., visual_prompt=kind)), in batches. Its output is scored as it is,
  off-format or not: that is the policy's own behaviour under the prompt.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from visd_core.config import Data as DataCfg
from visd_core.config import Model as ModelCfg
from visd_core.config import Rollout as RolloutCfg
from visd_core.data.model_inputs import SampleError, collate, load_prompt
from visd_core.data.schema import MCQ_TASKS, Record
from visd_core.data.video import SampledVideo, resize_frames
from visd_core.judge.cache import FeedbackCache
from visd_core.judge.transport import Call, ChatClient
from visd_core.judge.wire import BadReply, chat_body, parse_content
from visd_core.model.build import build_unsharded
from visd_core.prompt import FORMAT_INSTRUCTIONS, _lettered, format_time
from visd_core.rollout import generate
from visd_core.tokenizer import load_tokenizer
from visd_core.vocab_subset import with_folder_subset
from visd_core.visual_prompts import ClipRelevance, apply_visual_prompt, key_frame_boxes, with_hint

log = logging.getLogger(__name__)

MAX_PROXY_FRAMES = 8         # a record with no key frame among the sampled ones shows this many, evenly spaced
GREEDY = dict(temperature=0.0, top_p=1.0)     # temperature 0: the argmax at every step (rollout.sample_next)


@dataclass
class ProxyJob:
    record: Record               # the original record (its question without the hint)
    kind: str                    # the visual prompt to apply (visual_prompts.KINDS)
    video: SampledVideo          # the record's sampled frames, decoded once for every kind and reasoner


@dataclass
class ProxyReply:
    text: str | None             # the grounded answer, None when it could not be had
    frame_size: tuple[int, int] | None = None    # (width, height) of the frames the reasoner saw
    truncated: bool = False      # generation hit its token limit
    cause: str | None = None     # why text is None


class ProxyReasoner(ABC):
    name: str

    def __init__(self, name: str):
        self.name = name
        self.failures: Counter[str] = Counter()      # cause -> replies that could not be had

    @abstractmethod
    def answer(self, jobs: list[ProxyJob]) -> list[ProxyReply]:
        """One reply per job, in order; never raises on a reasoner fault."""

    def close(self) -> None:
        """Release threads and connections (a no-op for reasoners that hold none)."""


def shown_frames(video: SampledVideo, record: Record) -> list[int]:
    """The sampled frames that carry the record's key frames (where the prompts are drawn); a record
    with none of them among the sampled frames shows MAX_PROXY_FRAMES evenly spaced frames instead."""
    keys = list(key_frame_boxes(video.times, record))
    if keys:
        return keys
    n = len(video.frames)
    return sorted(set(np.linspace(0, n - 1, min(n, MAX_PROXY_FRAMES)).round().astype(int).tolist()))


# ---------------------------------------------------------------------------- HTTP
SYSTEM = "You are a spatio-temporal video question answering model."      # Figure 9, first line
_ANSWER = re.compile(r"<answer>.*?</answer>", re.DOTALL)


def _png_data_url(frame_HW3: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame_HW3).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def proxy_messages(record: Record, frames_KHW3: np.ndarray, numbers: list[int], times: list[float],
                   duration: float) -> list[dict]:
    """Figure 9's prompt for `record` (already hinted) over K prompted key frames: numbered as the
    policy's prompt numbers its sampled frames (1-based, as numpro draws them), with their times."""
    K, h, w = frames_KHW3.shape[:3]
    mcq = record.task in MCQ_TASKS
    intro = (f"You will be given:\n- A {'multiple-choice ' if mcq else ''}question about a video"
             f"{f' with {len(record.options)} options' if mcq else ''}.\n"
             f"- {K} keyframes from the video in chronological order, each {w}x{h} pixels.\n"
             "Some frames may contain visual prompts (e.g., boxes/circles/darkening/heatmaps or frame-number "
             "overlays).\nUse these visual prompts as grounding hints when helpful.\n\n"
             "Your job:\n1) Produce a short, evidence-grounded reasoning that explicitly cites objects, bounding "
             "boxes, and timestamps using special tags.\n2) Give the final answer.")
    parts: list[dict] = [{"type": "text", "text": intro}]
    for n, t, frame in zip(numbers, times, frames_KHW3):
        parts.append({"type": "text", "text": f"Frame {n} at {format_time(t)}s:"})
        parts.append({"type": "image_url", "image_url": {"url": _png_data_url(frame)}})
    lines = [f"The video is in total {int(duration)} seconds.", record.question.strip()]
    if mcq:
        lines += _lettered([o.strip() for o in record.options])
    lines += [FORMAT_INSTRUCTIONS[record.task],
              "Rules:\n- Each grounding claim MUST include <obj>, <box> and <t> together, exactly as "
              "<obj>OBJECT</obj><box>[x1,y1,x2,y2]</box>at<t>TIME</t>s\n"
              f"- Boxes are integer pixel coordinates of the {w}x{h} frames; times are the frames' seconds.\n"
              "- The reasoning must not exceed 200 words.\n"
              "- Return ONLY <think>...</think><answer>...</answer>."]
    parts.append({"type": "text", "text": "\n".join(lines)})
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": parts}]


class HTTPReasoner(ChatClient, ProxyReasoner):
    def __init__(self, base_url: str, model: str, data_cfg: DataCfg, *, api_key_env: str,
                 cache: FeedbackCache | None = None, clip: ClipRelevance | None = None, timeout_s: float = 120.0,
                 deadline_s: float = 900.0, max_retries: int = 3, concurrency: int = 4, max_tokens: int = 1024,
                 temperature: float = 0.0, backoff_s: float = 0.5, name: str | None = None):
        ChatClient.__init__(self, base_url, api_key_env, timeout_s=timeout_s, deadline_s=deadline_s,
                            max_retries=max_retries, concurrency=concurrency, cache=cache, name="proxy",
                            url_what="--reasoner URL", backoff_s=backoff_s)
        ProxyReasoner.__init__(self, name or model)
        self.model, self.data_cfg, self.clip = model, data_cfg, clip
        self.max_tokens, self.temperature = max_tokens, temperature

    def _parse(self, data: bytes) -> str:
        content = parse_content(data)
        if not _ANSWER.search(content):
            raise BadReply(f"no <answer>...</answer> in the reply: {content[:80]!r}")
        return content.strip()

    def _request(self, job: ProxyJob) -> tuple[bytes, tuple[int, int]]:
        v = job.video
        frames = apply_visual_prompt(v.frames, v.times, job.record, job.kind, clip=self.clip)
        keys = shown_frames(v, job.record)
        shown = resize_frames(frames[keys], self.data_cfg.min_pixels, self.data_cfg.max_pixels)
        msgs = proxy_messages(with_hint(job.record, job.kind), shown, [k + 1 for k in keys],
                              [v.times[k] for k in keys], v.duration)
        body = chat_body(self.model, msgs, self.temperature, self.max_tokens)
        return body, (shown.shape[2], shown.shape[1])

    def answer(self, jobs: list[ProxyJob]) -> list[ProxyReply]:
        t0 = time.monotonic()
        replies: list[ProxyReply | None] = [None] * len(jobs)
        calls: dict[str, Call] = {}
        owners: dict[str, list[int]] = {}
        sizes: dict[str, tuple[int, int]] = {}
        for i, job in enumerate(jobs):
            body, size = self._request(job)
            key = hashlib.sha256(body).hexdigest()       # the request is the key: model, prompt, pixels
            sizes[key] = size
            if key in calls:
                owners[key].append(i)
                continue
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                replies[i] = ProxyReply(hit, size)
                continue
            calls[key], owners[key] = Call(key, body), [i]
        outcomes = self.run_calls(list(calls.values()), t0 + self.deadline_s)
        details = {}
        for c, o in zip(calls.values(), outcomes):
            for i in owners[c.key]:
                replies[i] = ProxyReply(o.text, sizes[c.key], cause=o.cause)
            if o.text is None:
                self.failures[o.cause] += len(owners[c.key])
                details.setdefault(o.cause, o.detail)
        if details:
            log.warning("proxy %s: %d/%d replies missing (%s)", self.name, sum(r.text is None for r in replies),
                        len(jobs), "; ".join(f"{k}: {self._scrub(v)}" for k, v in details.items()))
        return replies


# ---------------------------------------------------------------------------- local checkpoint
def tokenizer_spec(model_cfg: ModelCfg) -> str:
    """The checkpoint's own tokenizer files when it has them, else [model] tokenizer (bundled by default)."""
    d = Path(model_cfg.path) if model_cfg.path else None
    if d is not None and not model_cfg.tokenizer and ((d / "tokenizer.json").is_file() or (d / "vocab.json").is_file()):
        return str(d)
    return model_cfg.tokenizer


class CheckpointReasoner(ProxyReasoner):
    def __init__(self, model_cfg: ModelCfg, data_cfg: DataCfg, *, clip: ClipRelevance | None = None,
                 batch_size: int = 8, max_new_tokens: int = 768, seed: int = 0, name: str | None = None):
        super().__init__(name or (Path(model_cfg.path).name if model_cfg.path else "tiny"))
        self.model = build_unsharded(model_cfg, seed=seed).eval()
        tok = load_tokenizer(tokenizer_spec(model_cfg))
        self.tok = with_folder_subset(tok, model_cfg.path) if model_cfg.path else tok   # a tiny export's rows
        self.data_cfg, self.clip, self.batch_size = data_cfg, clip, batch_size
        self.rollout = RolloutCfg(max_new_tokens=max_new_tokens, **GREEDY)
        self.generator = torch.Generator().manual_seed(seed)      # only exact ties in the top logit draw from it

    @torch.no_grad()
    def answer(self, jobs: list[ProxyJob]) -> list[ProxyReply]:
        replies: list[ProxyReply] = [ProxyReply(None, cause="sample_error") for _ in jobs]
        samples = []
        for i, job in enumerate(jobs):
            try:
                samples.append((i, load_prompt(job.record, self.data_cfg, self.tok, visual_prompt=job.kind,
                                               clip=self.clip)))
            except SampleError as e:
                log.warning("proxy %s: %s", self.name, e)
                self.failures["sample_error"] += 1
        for start in range(0, len(samples), self.batch_size):
            chunk = samples[start:start + self.batch_size]
            batch = collate([(s.prompt_ids, [], s) for _, s in chunk], self.tok.pad_id)
            out = generate(self.model, batch, self.rollout, group_size=1, stop_ids=self.tok.eos_ids, pad_id=self.tok.pad_id,
                           generator=self.generator)
            for (i, s), ids, trunc in zip(chunk, out.rows(), out.truncated.tolist()):
                text = self.tok.decode([t for t in ids if t not in self.tok.eos_ids])
                replies[i] = ProxyReply(text, s.frame_size, truncated=trunc)
        return replies
