"""VP-Selector training labels by visioncoach eq. 3: v_i = argmax_{v_k ∈ 𝒱} (A_k + G_k).

    python -m visd_core.selector labels --data train.jsonl --out labels.jsonl --reasoner-checkpoint runs/x/export
    python -m visd_core.selector labels --data train.jsonl --out labels.jsonl \\
        --reasoner 'https://api.openai.com/v1|gpt-4o' --api-key-env OPENAI_API_KEY --clip-path /models/clip

For every record and every kind v_k (api_prompt only with a CLIP), each proxy reasoner answers the
visual-prompted input x'_k = VP(x; v_k) with the hinted question (proxy.py), and the project's
verifier (rewards/reward.py) scores the reply as it scores a rollout, in the pixel space the
reasoner saw, with visioncoach's object-aware spatial reward (eq. 8) and the final σ (progress 1):

  A_k  answer accuracy: binary for MCQ tasks (the option letter is right); otherwise the task's
       answer reward in [0, 1] (temporal QA: tIoU of the interval, visual QA: IoU of the box,
       free-form: ROUGE).
  G_k  grounding: the mean of the temporal and spatial components that apply to the record, other
       than the one A_k already is: ans_tmp (temporal MCQ's interval), thk_tmp (visd eq. 11/12),
       thk_spa (visioncoach eq. 8: box IoU gated by time and by a soft object-name match — App. C.2's
       "spatial IoU and object matching"). 0 when none applies (video MCQ / free-form without
       evidence): equal for every kind, so A_k decides.

A_k and G_k are averaged over the reasoners that replied for (record, kind); a reply that could not
be had is missing, not zero, and a kind no reasoner answered is not a candidate. Ties (within
1e-9) go to "raw" — visual guidance is not always beneficial (App. C.1), so a prompt must earn its
label — then to the first in KINDS order. A record with no score at all gets no label: it is
listed, counted, and not written, so a rerun tries it again.

App. C.2 selects differently in its released pipeline (keep the kinds on which all three reasoners
answer correctly, then rank them by mean IoU + object matching); eq. 3 of the main text is what
this file implements.

Output, one line per labeled record, appended and flushed as it goes (a rerun skips the ids
already there; a torn last line from a crash is dropped first):
    {"id": ..., "label": "darken", "scores": {kind: {"A": .., "G": .., "n": reasoners}}, "reasoners": [...]}
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from visd_core.config import Data as DataCfg
from visd_core.config import Reward
from visd_core.data.model_inputs import SampleError, decode_frames
from visd_core.data.schema import MCQ_TASKS, Record
from visd_core.rewards.reward import score_group
from visd_core.selector.proxy import ProxyJob, ProxyReasoner, ProxyReply
from visd_core.visual_prompts import KINDS

log = logging.getLogger(__name__)

LABEL_REWARD = Reward(spatial="object_aware")    # visioncoach eq. 8: IoU and object identity (App. C.2)
LABEL_PROGRESS = 1.0                             # σ at its final value: grounding judged as at the end of RL
TIE_EPS = 1e-9                                   # averaged floats that differ by less are a tie
_MAIN = {"temporal_qa": "ans_tmp", "visual_qa": "ans_spa"}      # the answer component; "ans" elsewhere
_GROUNDING = ("ans_tmp", "ans_spa", "thk_tmp", "thk_spa")


@dataclass
class KindScore:
    A: float | None          # mean answer accuracy over the reasoners that replied (None: none did)
    G: float | None          # mean grounding
    n: int                   # reasoners that replied

    def to_json(self) -> dict:
        return {"A": self.A, "G": self.G, "n": self.n}


def answer_and_grounding(record: Record, reply: ProxyReply) -> tuple[float, float]:
    """(A, G) of one reply (see the module docstring)."""
    r = score_group(record, [reply.text], reply.frame_size, LABEL_PROGRESS, LABEL_REWARD,
                    truncated=[reply.truncated])[0]
    main = _MAIN.get(record.task, "ans")
    if record.task in MCQ_TASKS:
        a = 1.0 if r.diagnosis.answer_correct else 0.0
    else:
        a = r.components[main] or 0.0       # None: the record cannot verify its answer (same for every kind)
    g = [r.components[k] for k in _GROUNDING if k != main and r.components[k] is not None]
    return a, sum(g) / len(g) if g else 0.0


def average(pairs: list[tuple[float, float] | None]) -> KindScore:
    """Mean (A, G) over the reasoners' scores; None entries (missing replies) are left out."""
    got = [p for p in pairs if p is not None]
    if not got:
        return KindScore(None, None, 0)
    return KindScore(sum(a for a, _ in got) / len(got), sum(g for _, g in got) / len(got), len(got))


def choose_label(scores: dict[str, KindScore]) -> str | None:
    """visioncoach eq. 3: argmax_k (A_k + G_k) over the kinds with at least one score; ties to
    "raw", then to KINDS order. None when no kind has a score."""
    scored = {k: s.A + s.G for k, s in scores.items() if s.n > 0}
    if not scored:
        return None
    best = max(scored.values())
    tied = [k for k in scored if scored[k] >= best - TIE_EPS]
    if "raw" in tied:
        return "raw"
    return min(tied, key=KINDS.index)


def done_ids(out: Path) -> set[str]:
    """Ids already labeled in `out` (resume). Lines that do not parse (a torn last line) are dropped
    from the file, so appending continues on a clean line."""
    if not out.exists():
        return set()
    ids, good, bad = set(), [], 0
    for line in out.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
        try:
            obj = json.loads(line)
            ok = line.endswith("\n") and isinstance(obj, dict) and isinstance(obj.get("id"), str)
        except json.JSONDecodeError:
            ok = False
        if ok:
            ids.add(obj["id"])
            good.append(line)
        elif line.strip():
            bad += 1
    if bad:
        log.warning("%s: dropping %d unreadable line(s) (an interrupted write) before resuming", out, bad)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text("".join(good), encoding="utf-8")
        os.replace(tmp, out)
    return ids


@dataclass
class LabelRun:
    labeled: int = 0
    skipped_done: int = 0                                     # already in the output
    unlabeled: list[str] = field(default_factory=list)       # every reply missing: no label
    unreadable: list[str] = field(default_factory=list)      # the video could not be decoded
    labels: Counter = field(default_factory=Counter)
    failures: dict[str, Counter] = field(default_factory=dict)   # reasoner -> cause -> missing replies

    def summary(self) -> str:
        lines = [f"labeled {self.labeled} record(s) ({self.skipped_done} already done): "
                 + ", ".join(f"{k} {self.labels[k]}" for k in KINDS if self.labels[k])]
        for name, causes in self.failures.items():
            if causes:
                lines.append(f"reasoner {name}: missing replies by cause: "
                             + ", ".join(f"{c} {n}" for c, n in sorted(causes.items())))
        if self.unlabeled:
            lines.append(f"{len(self.unlabeled)} record(s) got no label (no reasoner replied; a rerun retries "
                         f"them): {', '.join(self.unlabeled[:20])}{' ...' if len(self.unlabeled) > 20 else ''}")
        if self.unreadable:
            lines.append(f"{len(self.unreadable)} record(s) skipped, unreadable video: "
                         f"{', '.join(self.unreadable[:20])}")
        return "\n".join(lines)


def write_labels(records: list[Record], reasoners: list[ProxyReasoner], out: str | Path, data_cfg: DataCfg,
                 kinds: tuple[str, ...], *, records_per_batch: int = 8, progress: bool = True) -> LabelRun:
    """Label the records not yet in `out`, `records_per_batch` at a time (all their kinds go to each
    reasoner as one batch), appending one line per labeled record."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_ids(out)
    run = LabelRun(skipped_done=sum(r.id in done for r in records))
    todo = [r for r in records if r.id not in done]
    names = [r.name for r in reasoners]
    with open(out, "a", encoding="utf-8") as f, tqdm(total=len(todo), desc="labels", unit="rec",
                                                     disable=not progress) as bar:
        for start in range(0, len(todo), records_per_batch):
            jobs = []
            for rec in todo[start:start + records_per_batch]:
                try:
                    video = decode_frames(rec, data_cfg)
                except SampleError as e:
                    log.warning("%s", e)
                    run.unreadable.append(rec.id)
                    continue
                jobs += [ProxyJob(rec, k, video) for k in kinds]
            replies = {r.name: r.answer(jobs) for r in reasoners}
            for j in range(0, len(jobs), len(kinds)):
                rec = jobs[j].record
                per_kind = {}
                used = set()
                for i, kind in enumerate(kinds):
                    pairs = []
                    for name in names:
                        reply = replies[name][j + i]
                        pairs.append(None if reply.text is None else answer_and_grounding(rec, reply))
                        if reply.text is not None:
                            used.add(name)
                    per_kind[kind] = average(pairs)
                label = choose_label(per_kind)
                if label is None:
                    run.unlabeled.append(rec.id)
                    continue
                f.write(json.dumps({"id": rec.id, "label": label,
                                    "scores": {k: s.to_json() for k, s in per_kind.items()},
                                    "reasoners": [n for n in names if n in used]}) + "\n")
                f.flush()
                run.labeled += 1
                run.labels[label] += 1
            bar.update(min(records_per_batch, len(todo) - start))
    run.failures = {r.name: Counter(r.failures) for r in reasoners}
    return run
