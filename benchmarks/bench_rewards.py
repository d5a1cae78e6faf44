"""Reward throughput: score groups of G = 4 completions of ~768 tokens (~3 KB, ~20 evidence
claims each) as the trainer does, per task and spatial mode, and print the time per completion.

    .venv/bin/python benchmarks/bench_rewards.py [--groups 300]

The target is well under 1 ms per completion (issue 4): reward scoring must stay negligible next
to a rollout.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visd_core.config import Reward                                  # noqa: E402
from visd_core.data.schema import parse_record                       # noqa: E402
from visd_core.rewards import parse_completion, score_group          # noqa: E402

FRAME = (448, 336)
OBJECTS = ["red circle", "blue square", "green triangle"]
TIMES = [round(1.5 * i, 1) for i in range(16)]


def make_record(task: str):
    frames = [{"time": t, "idx": i} for i, t in enumerate(TIMES[2:14:2])]
    items = {str(f["idx"]): {o: [[0.1 + 0.1 * j, 0.2, 0.3 + 0.1 * j, 0.5]] for j, o in enumerate(OBJECTS)}
             for f in frames}
    extra = {"temporal_qa": {"answer": "", "window": [6.0, 12.0]},
             "temporal_mcq": {"answer": "B", "options": ["A. a", "B. b", "C. c", "D. d"], "window": [6.0, 12.0]},
             "visual_qa": {"answer": "red circle"},
             "st_freeform": {"answer": "the red circle passes the blue square and stops near the green triangle"},
             "video_mcq": {"answer": "C", "options": ["A. a", "B. b", "C. c", "D. d"]},
             "video_freeform": {"answer": "a person opens the door and walks out"}}[task]
    return parse_record({"id": task, "task": task, "question": "q?", "video_path": "v.mp4",
                         "key_frames": frames, "key_items": items, **extra})


def make_completion(rng: random.Random, task: str) -> str:
    """~3 KB: prose interleaved with ~20 claims and timestamps, then the task's answer."""
    parts = []
    while sum(map(len, parts)) < 2900:
        t = rng.choice(TIMES) + rng.choice([0, 0.1, -0.2, 0.5])
        o = rng.choice(OBJECTS)
        x = rng.randrange(0, 300)
        parts.append(f"Looking closely at frame {rng.randrange(16)}, the scene shows that "
                     f"<obj>{o}</obj><box>[{x},{rng.randrange(60, 80)},{x + 90},{rng.randrange(160, 180)}]</box>"
                     f"at<t>{t:.1f}</t>s is moving towards the right side while other objects stay still. ")
    answer = {"temporal_qa": "From <t>6.1</t>s to <t>11.8</t>s",
              "temporal_mcq": "From <t>6.1</t>s to <t>11.8</t>s\nCorrect Option: B",
              "visual_qa": "<obj>red circle</obj><box>[45,67,134,168]</box>",
              "st_freeform": "The red circle passes the blue square and stops by the green triangle.",
              "video_mcq": "C.", "video_freeform": "A person opens the door, then walks outside."}[task]
    return f"<think>{''.join(parts)}</think><answer>{answer}</answer>"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=300)
    args = ap.parse_args()
    rng = random.Random(0)
    print(f"group of 4 completions, {args.groups} groups x 3 rounds per row; time per completion")
    for task in ("st_freeform", "temporal_mcq", "temporal_qa", "visual_qa", "video_mcq", "video_freeform"):
        record = make_record(task)
        groups = [[make_completion(rng, task) for _ in range(4)] for _ in range(args.groups)]
        chars = sum(len(c) for g in groups for c in g) / (4 * args.groups)
        n_claims = sum(len(parse_completion(c).claims) for g in groups for c in g) / (4 * args.groups)
        for spatial in ("max_iou", "object_aware"):
            cfg = Reward(spatial=spatial)
            per_group = []
            for _ in range(3):
                for i, g in enumerate(groups):
                    t0 = time.perf_counter()
                    score_group(record, g, FRAME, i / len(groups), cfg)
                    per_group.append((time.perf_counter() - t0) / 4)
            per_group.sort()
            # The median is what a shared machine gives; the minimum is the code's own cost
            # (a group that ran without being preempted or sharing its core).
            print(f"  {task:15s} {spatial:12s} {chars:6.0f} chars {n_claims:4.1f} claims  "
                  f"median {per_group[len(per_group) // 2] * 1e6:6.1f} µs  min {per_group[0] * 1e6:6.1f} µs")
    per_text = []
    for g in groups:
        for c in g:
            t0 = time.perf_counter()
            parse_completion(c)
            per_text.append(time.perf_counter() - t0)
    per_text.sort()
    print(f"  parse_completion alone ({task}): median {per_text[len(per_text) // 2] * 1e6:.1f} µs  "
          f"min {per_text[0] * 1e6:.1f} µs")
    calib = min(timeit.repeat("sum(range(1000))", number=200, repeat=5)) / 200
    print(f"machine speed: sum(range(1000)) takes {calib * 1e6:.1f} µs here (about 8 µs on an idle modern core)")

if __name__ == "__main__":
    main()
