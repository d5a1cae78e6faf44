"""Synthetic grounded-video dataset: moving shapes, questions of every task, exact evidence.

    python -m visd_core.data.synthetic --out data/synthetic --n 2000 --seed 0

writes <out>/train.jsonl (n records), <out>/val.jsonl (--n-val, default max(6, n/20)),
<out>/videos/*.mp4 (one video per record) and <out>/meta.json. Each record follows
visd_core/data/schema.py; its `reasoning_process` is the grounded chain-of-thought SFT target in
the papers' format, `<think>... <obj>red circle</obj><box>[x1,y1,x2,y2]</box>at<t>3.2</t>s
...</think><answer>...</answer>`, with boxes in integer pixels of the frame the model sees.

Frame budget of the embedded default: 160x120 videos resized under MAX_PIXELS = 12 * 28 * 28 =
9,408 become 112x84 = 8x6 patches of 14 px = 4x3 merged tokens, i.e. 12 visual tokens per frame
and 192 for the 16 sampled frames. Key frames are always among those 16 uniformly sampled frames
(video.sample_frame_indices), so the model sees every frame its reasoning cites. Deterministic for
a seed: record i draws from numpy's generator seeded with (seed, split, i), whatever the workers.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from contextlib import nullcontext
from multiprocessing import Pool

import av
import numpy as np
from tqdm import tqdm

from visd_core.data.resize import MIN_PIXELS, box_to_pixels, resized_size, tokens_per_frame
from visd_core.data.schema import TASKS, parse_record
from visd_core.data.synthetic_scene import COLORS, FPS, KINDS, H, W, Scene, sample_scene
from visd_core.data.video import sample_frame_indices
from visd_core.prompt import format_box

NUM_FRAMES = 16                 # frames the model samples per video (visioncoach App. B.2: 16 frames)
MAX_PIXELS = 12 * 28 * 28       # 9,408: 160x120 -> 112x84, 12 tokens per frame (see docstring)
RW, RH = resized_size(W, H, MIN_PIXELS, MAX_PIXELS)
SPLITS = {"train": 0, "val": 1}     # the split's number seeds its records apart from the other's
LETTERS = "ABCD"
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def fmt_time(frame: int) -> str:
    return f"{frame / FPS:.1f}"     # FPS = 5: every frame time has exactly one decimal


def where(box: list[float]) -> str:
    """Coarse position of a normalized box's center, for the reasoning text."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "center"
    return "in the center" if (row, col) == ("middle", "center") else f"in the {row} {col}"


class Evidence:
    """The key frames and boxes a sample's reasoning cites. Every claim registers its box here, so
    the record's evidence and the reasoning's boxes cannot disagree."""

    def __init__(self, scene: Scene):
        self.scene = scene
        self.frames: dict[int, dict[str, list[float]]] = {}     # frame -> object name -> normalized box

    def box(self, j: int, f: int) -> str:
        """`<box>[x1,y1,x2,y2]</box>` of shape j in frame f, in resized-frame pixels."""
        shape = self.scene.shapes[j]
        assert shape.visible[f], f"{shape.name} is not visible in frame {f}"
        norm = shape.norm_box(f)
        self.frames.setdefault(f, {})[shape.name] = norm
        return f"<box>{format_box(box_to_pixels(norm, RW, RH))}</box>"

    def claim(self, j: int, f: int) -> str:
        """`<obj>NAME</obj><box>[...]</box>at<t>T</t>s`: shape j seen in frame f."""
        return f"<obj>{self.scene.shapes[j].name}</obj>{self.box(j, f)}at<t>{fmt_time(f)}</t>s"

    def record_fields(self) -> dict:
        order = sorted(self.frames)
        return {"key_frames": [{"time": f / FPS, "idx": i} for i, f in enumerate(order)],
                "key_items": {str(i): {name: [box] for name, box in self.frames[f].items()}
                              for i, f in enumerate(order)}}


# ---------------------------------------------------------------------------------------------
# Events and questions
# ---------------------------------------------------------------------------------------------

def events(scene: Scene) -> list[tuple]:
    """(kind, shape indices, (first frame, last frame)) of everything that happens in time."""
    out = []
    for j, s in enumerate(scene.shapes):
        if not s.visible.all():
            out.append(("visible", (j,), s.visible_span()))
        if (span := s.motion_span()) is not None:
            out.append(("move", (j,), span))
    if (p := scene.push) is not None:
        out.append(("push", (p.pusher, p.pushed), (p.start, p.end)))
    return out


def when_question(scene: Scene, kind: str, js: tuple) -> str:
    names = [scene.shapes[j].name for j in js]
    if kind == "visible":
        return f"When is the {names[0]} visible?"
    if kind == "move":
        return f"When does the {names[0]} move?"
    return f"When does the {names[0]} push the {names[1]}?"


def interval(span: tuple[int, int], tagged: bool = True) -> str:
    """`From <t>S</t>s to <t>E</t>s` (the answer format), or untagged for an MCQ option."""
    s, e = fmt_time(span[0]), fmt_time(span[1])
    return f"From <t>{s}</t>s to <t>{e}</t>s" if tagged else f"From {s}s to {e}s"


def temporal_reasoning(ev: Evidence, sampled: list[int], kind: str, js: tuple, span: tuple[int, int]) -> str:
    """Cite the first and last sampled frames inside the event (>= 2: events span >= 6 frames and
    sampled frames are <= 3 apart), and only those, so every <t> lies in the answer window."""
    inside = [f for f in sampled if span[0] <= f <= span[1]]
    f0, f1 = inside[0], inside[-1]
    names = [ev.scene.shapes[j].name for j in js]
    if kind == "visible":
        s = ev.scene.shapes[js[0]]
        before = "absent from the earlier frames, " if s.visible_span()[0] > 0 else ""
        after = ", and it is gone in the later frames" if s.visible_span()[1] < ev.scene.n_frames - 1 else ""
        body = (f"The {names[0]} is {before}first seen at {ev.claim(js[0], f0)} and last seen at "
                f"{ev.claim(js[0], f1)}{after}.")
    elif kind == "move":
        s = ev.scene.shapes[js[0]]
        body = (f"The {names[0]} moves {s.direction()}: it is on its way as {ev.claim(js[0], f0)} and as "
                f"{ev.claim(js[0], f1)}; before and after that it stays in place.")
    else:
        body = (f"{ev.claim(js[0], f0)} is in contact with {ev.claim(js[1], f0)}, and {ev.claim(js[0], f1)} "
                f"is still pushing {ev.claim(js[1], f1)}; before that they are apart, and afterwards the "
                f"{names[0]} stops.")
    return body + f" So this happens from about {fmt_time(span[0])}s to {fmt_time(span[1])}s."


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else float(a == b)


def mcq(rng, correct: str, distractors: list[str]) -> tuple[list[str], str]:
    """Four lettered options in random order; returns (options, answer letter)."""
    opts = [correct] + distractors[:3]
    order = rng.permutation(len(opts))
    letters = LETTERS[:len(opts)]
    return [f"{letters[i]}. {opts[k]}" for i, k in enumerate(order)], letters[int(np.argmax(order == 0))]


def interval_distractors(rng, scene: Scene, span: tuple[int, int],
                         others: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Three intervals clearly unlike the answer (IoU < 0.5) and each other: the video's other
    events first (the confusable ones), then random spans."""
    picked = []
    candidates = [s for s in others if s != span]
    while len(picked) < 3:
        if candidates:
            c = candidates.pop(0)
        else:       # at most half the video long, so one always fits even when the answer is long
            ln = int(rng.integers(2, scene.n_frames // 2))
            s0 = int(rng.integers(0, scene.n_frames - ln))
            c = (s0, s0 + ln)
        if iou(c, span) < 0.5 and all(iou(c, p) < 0.8 for p in picked):
            picked.append(c)
    return picked


# ---------------------------------------------------------------------------------------------
# One generator per task: each returns the record's task-specific fields and the SFT target
# ---------------------------------------------------------------------------------------------

def gen_temporal(rng, scene: Scene, sampled: list[int], ev: Evidence, with_options: bool) -> dict:
    evs = events(scene)
    kind, js, span = evs[int(rng.integers(len(evs)))]
    think = temporal_reasoning(ev, sampled, kind, js, span)
    out = {"question": when_question(scene, kind, js), "window": [span[0] / FPS, span[1] / FPS]}
    if not with_options:
        out |= {"task": "temporal_qa", "answer": interval(span), "think": think, "final": interval(span)}
        return out
    wrong = interval_distractors(rng, scene, span, [e[2] for e in evs])
    options, letter = mcq(rng, interval(span, tagged=False), [interval(s, tagged=False) for s in wrong])
    out |= {"task": "temporal_mcq", "options": options, "answer": letter, "think": think,
            "final": f"{interval(span)}. Correct Option: {letter}"}
    return out


def gen_visual_qa(rng, scene: Scene, sampled: list[int], ev: Evidence) -> dict:
    p = scene.push
    contact = [f for f in sampled if p is not None and p.start <= f <= p.end]
    if contact and rng.random() < 0.4:      # find the shape by what it does, not by its name
        f = contact[int(rng.integers(len(contact)))]
        a, b = scene.shapes[p.pusher], scene.shapes[p.pushed]
        side = "left" if p.direction == "right" else "right"
        think = (f"At <t>{fmt_time(f)}</t>s the {b.name} is at {ev.claim(p.pushed, f)}, and the shape "
                 f"touching it from the {side} is the {a.name}: {ev.claim(p.pusher, f)}.")
        q = f"Where is the shape that is pushing the {b.name} at {fmt_time(f)}s?"
        j = p.pusher
    else:
        j = int(rng.integers(len(scene.shapes)))
        seen = [f for f in sampled if scene.shapes[j].visible[f]]
        f = seen[int(rng.integers(len(seen)))]
        name = scene.shapes[j].name
        think = (f"At <t>{fmt_time(f)}</t>s I look for the {name}. It is {where(scene.shapes[j].norm_box(f))}: "
                 f"{ev.claim(j, f)}.")
        q = f"Where is the {name} at {fmt_time(f)}s?"
    name = scene.shapes[j].name
    return {"task": "visual_qa", "question": q, "answer": name, "think": think,
            "final": f"<obj>{name}</obj>{ev.box(j, f)}"}


def gen_st_freeform(rng, scene: Scene, sampled: list[int], ev: Evidence) -> dict:
    pair = () if scene.push is None else (scene.push.pusher, scene.push.pushed)
    evs = [e for e in events(scene) if e[0] != "move" or e[1][0] not in pair]   # a push's moves: "push"
    kind, js, span = evs[int(rng.integers(len(evs)))]   # a push, a plain move, or an appearance
    s = scene.shapes[js[0]]
    inside = [f for f in sampled if span[0] <= f <= span[1]]
    f0, f1 = inside[0], inside[-1]
    if kind == "push":
        b = scene.shapes[js[1]]
        before = max(f for f in sampled if f < span[0])
        q = f"What happens between the {s.name} and the {b.name}?"
        answer = f"The {s.name} pushes the {b.name} to the {scene.push.direction}."
        think = (f"{ev.claim(js[0], before)} moves toward {ev.claim(js[1], before)}. {ev.claim(js[0], f0)} "
                 f"touches {ev.claim(js[1], f0)}, and they move {scene.push.direction} together, still "
                 f"touching as {ev.claim(js[0], f1)} and {ev.claim(js[1], f1)}.")
    elif kind == "move":
        q = f"How does the {s.name} move?"
        answer = f"The {s.name} moves {s.direction()} and then stops."
        think = (f"The {s.name} is {where(s.norm_box(f0))} as {ev.claim(js[0], f0)} and "
                 f"{where(s.norm_box(f1))} as {ev.claim(js[0], f1)}: it moves {s.direction()}, resting "
                 f"before and after.")
    else:
        a, d = s.visible_span()
        q = f"What happens to the {s.name}?"
        parts = ([f"appears at {fmt_time(a)} seconds"] if a > 0 else []) + \
                ([f"disappears at {fmt_time(d + 1)} seconds"] if d < scene.n_frames - 1 else [])
        answer = f"The {s.name} " + " and ".join(parts) + "."
        think = (f"The {s.name} is first seen at {ev.claim(js[0], f0)} and last seen at "
                 f"{ev.claim(js[0], f1)}; in the other frames it is not there.")
    return {"task": "st_freeform", "question": q, "answer": answer, "window": [span[0] / FPS, span[1] / FPS],
            "think": think, "final": answer}


def _first_seen(scene: Scene, sampled: list[int], j: int) -> int:
    return next(f for f in sampled if scene.shapes[j].visible[f])


def _unique_kinds(scene: Scene) -> list[int]:
    kinds = Counter(s.kind for s in scene.shapes)
    return [j for j, s in enumerate(scene.shapes) if kinds[s.kind] == 1]


def gen_video_mcq(rng, scene: Scene, sampled: list[int], ev: Evidence) -> dict:
    kinds = ["shape", "count", "direction"] + (["color"] if _unique_kinds(scene) else []) + \
            (["pusher"] if scene.push else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "shape":
        j = int(rng.integers(len(scene.shapes)))
        s, f = scene.shapes[j], _first_seen(scene, sampled, j)
        q = f"What shape is the {s.color} object?"
        correct, wrong = s.kind, [k for k in KINDS if k != s.kind]
        think = f"The {s.color} object appears at {ev.claim(j, f)}; its outline is a {s.kind}."
    elif kind == "color":
        j = _unique_kinds(scene)[int(rng.integers(len(_unique_kinds(scene))))]
        s, f = scene.shapes[j], _first_seen(scene, sampled, j)
        q = f"What color is the {s.kind}?"
        correct, wrong = s.color, list(rng.permutation([c for c in COLORS if c != s.color])[:3])
        think = f"The only {s.kind} in the video is {ev.claim(j, f)}, which is {s.color}."
    elif kind == "count":
        q = "How many shapes appear in the video?"
        n = len(scene.shapes)
        correct, wrong = str(n), [str(k) for k in (2, 3, 4, 5) if k != n]
        think = "I count the shapes: " + ", ".join(ev.claim(j, _first_seen(scene, sampled, j))
                                                  for j in range(n)) + f". That is {NUMBER_WORDS[n]} shapes."
    elif kind == "direction":
        movers = [j for j, s in enumerate(scene.shapes) if s.motion_span() is not None]
        j = movers[int(rng.integers(len(movers)))]
        s = scene.shapes[j]
        a, b = s.motion_span()
        inside = [f for f in sampled if a <= f <= b]
        q = f"In which direction does the {s.name} move?"
        correct, wrong = s.direction(), [d for d in ("left", "right", "up", "down") if d != s.direction()]
        think = (f"The {s.name} is {where(s.norm_box(inside[0]))} as {ev.claim(j, inside[0])} and later "
                 f"{where(s.norm_box(inside[-1]))} as {ev.claim(j, inside[-1])}, so it moves {s.direction()}.")
    else:
        p = scene.push
        a, b = scene.shapes[p.pusher], scene.shapes[p.pushed]
        f = next(f for f in sampled if p.start <= f <= p.end)
        q = f"Which shape pushes the {b.name}?"
        others = [s.name for j, s in enumerate(scene.shapes) if j not in (p.pusher, p.pushed)]
        made_up = [f"{c} {KINDS[k]}" for c, k in zip(rng.permutation(list(COLORS)),   # fill-ins
                                                      rng.integers(len(KINDS), size=len(COLORS)))]
        correct = a.name
        wrong = list(dict.fromkeys(o for o in others + made_up if o not in (a.name, b.name)))[:3]
        think = f"{ev.claim(p.pusher, f)} touches {ev.claim(p.pushed, f)} and moves it {p.direction}."
    options, letter = mcq(rng, correct, [str(w) for w in wrong])
    return {"task": "video_mcq", "question": q, "options": options, "answer": letter, "think": think,
            "final": letter}


def gen_video_freeform(rng, scene: Scene, sampled: list[int], ev: Evidence) -> dict:
    kinds = ["list", "count", "moving"] + (["color"] if _unique_kinds(scene) else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    n = len(scene.shapes)
    names = [s.name for s in scene.shapes]
    if kind in ("list", "count"):
        listed = ", ".join(f"a {x}" for x in names[:-1]) + f" and a {names[-1]}"
        if kind == "list":
            q, answer = "Which shapes appear in the video?", listed[0].upper() + listed[1:] + "."
        else:
            q, answer = "How many shapes appear in the video?", f"{NUMBER_WORDS[n].capitalize()} shapes: {listed}."
        think = "I go through the frames and find " + ", ".join(
            ev.claim(j, _first_seen(scene, sampled, j)) for j in range(n)) + "."
    elif kind == "moving":
        movers = [j for j, s in enumerate(scene.shapes) if s.motion_span() is not None]
        subject = (" and ".join(f"the {names[j]}" for j in movers) if len(movers) <= 2
                   else ", ".join(f"the {names[j]}" for j in movers[:-1]) + f" and the {names[movers[-1]]}")
        q = "Which shapes move?"
        answer = subject[0].upper() + subject[1:] + (" moves." if len(movers) == 1 else " move.")
        spans = {j: scene.shapes[j].motion_span() for j in movers}
        moving_at = {j: next(f for f in sampled if a < f <= b) for j, (a, b) in spans.items()}   # mid-move
        think = ("Shapes on the move: " + ", ".join(
            f"{ev.claim(j, f)} heading {scene.shapes[j].direction()}" for j, f in moving_at.items())
            + "; the others stay where they are.")
    else:
        j = _unique_kinds(scene)[int(rng.integers(len(_unique_kinds(scene))))]
        s = scene.shapes[j]
        q, answer = f"What color is the {s.kind}?", f"The {s.kind} is {s.color}."
        f = _first_seen(scene, sampled, j)
        think = f"The only {s.kind} in the video is {ev.claim(j, f)}, which is {s.color}."
    return {"task": "video_freeform", "question": q, "answer": answer, "think": think, "final": answer}


def make_record(split: str, seed: int, i: int) -> tuple[dict, Scene]:
    """Record i of a split (without its video) and the scene it describes."""
    rng = np.random.default_rng([seed, SPLITS[split], i])
    scene = sample_scene(rng)
    sampled = sample_frame_indices(scene.n_frames, NUM_FRAMES)
    ev = Evidence(scene)
    task = TASKS[i % len(TASKS)]        # round robin: every task equally often, even for tiny n
    if task in ("temporal_qa", "temporal_mcq"):
        fields = gen_temporal(rng, scene, sampled, ev, with_options=task == "temporal_mcq")
    else:
        fields = {"visual_qa": gen_visual_qa, "st_freeform": gen_st_freeform, "video_mcq": gen_video_mcq,
                  "video_freeform": gen_video_freeform}[task](rng, scene, sampled, ev)
    rid = f"{split}_{i:05d}"
    think, final = fields.pop("think"), fields.pop("final")
    rec = {"id": rid, "task": fields.pop("task"), "question": fields.pop("question"),
           "options": fields.pop("options", []), "answer": fields.pop("answer"),
           "video_path": f"videos/{rid}.mp4", **fields, **ev.record_fields(), "image_size": [W, H],
           "reasoning_process": f"<think>{think}</think><answer>{final}</answer>"}
    parse_record(rec)       # a generator bug fails here, loudly, not in training
    return rec, scene


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def write_mp4(path: str, frames: np.ndarray) -> None:
    """H.264 in 4:4:4, lossless (crf 0): decoded pixels are within 1 level of the rendered ones,
    so tests can check the ground truth against them. One encoder thread: the pool parallelizes."""
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p"
        stream.options = {"crf": "0", "preset": "ultrafast", "threads": "1"}
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())


def _job(args: tuple) -> dict:
    out, split, seed, i = args
    rec, scene = make_record(split, seed, i)
    write_mp4(os.path.join(out, rec["video_path"]), scene.render())
    return rec


def generate(out: str, n: int, seed: int = 0, n_val: int | None = None, workers: int = 2,
             progress: bool = True) -> dict:
    """Write the dataset under `out`; returns the summary also saved as <out>/meta.json."""
    n_val = max(len(TASKS), n // 20) if n_val is None else n_val
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    start = time.time()
    counts: dict[str, Counter] = {}
    bar = tqdm(total=n + n_val, desc="synthetic videos", unit="video", disable=not progress)
    with Pool(workers) if workers > 1 else nullcontext() as pool:
        for split, count in (("val", n_val), ("train", n)):
            jobs = [(out, split, seed, i) for i in range(count)]
            counts[split] = Counter()
            with open(os.path.join(out, f"{split}.jsonl.tmp"), "w") as f:
                for rec in pool.imap(_job, jobs, chunksize=8) if pool else map(_job, jobs):
                    f.write(json.dumps(rec) + "\n")
                    counts[split][rec["task"]] += 1
                    bar.update()
    bar.close()
    meta = {"generator": "visd_core.data.synthetic", "seed": seed, "n_train": n, "n_val": n_val,
            "frame_size": [W, H], "fps": FPS, "num_frames": NUM_FRAMES, "min_pixels": MIN_PIXELS,
            "max_pixels": MAX_PIXELS, "resized_size": [RW, RH],
            "tokens_per_frame": tokens_per_frame(W, H, MIN_PIXELS, MAX_PIXELS),
            "box_pixels": "reasoning boxes = resize.box_to_pixels(normalized box, *resized_size)",
            "codec": "libx264 yuv444p crf 0", "tasks": {k: dict(v) for k, v in counts.items()},
            "seconds": round(time.time() - start, 1)}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    for split in ("val", "train"):      # train.jsonl last: its presence means "complete" (Makefile)
        os.replace(os.path.join(out, f"{split}.jsonl.tmp"), os.path.join(out, f"{split}.jsonl"))
    return meta


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n", type=int, required=True, help="number of training records (one video each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-val", type=int, default=None, help="validation records (default: max(6, n/20))")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    if args.n < 1 or (args.n_val is not None and args.n_val < 0) or args.workers < 1:
        ap.error("--n and --workers must be >= 1 and --n-val >= 0")
    meta = generate(args.out, args.n, args.seed, args.n_val, args.workers)
    print(f"wrote {meta['n_train']} train + {meta['n_val']} val records and their videos to {args.out} "
          f"in {meta['seconds']}s")
    print(f"  videos {W}x{H} at {FPS} fps; the model sees {NUM_FRAMES} frames resized to {RW}x{RH} "
          f"(max_pixels={MAX_PIXELS}), {meta['tokens_per_frame']} visual tokens per frame")
    for split, c in meta["tasks"].items():
        print(f"  {split}: " + ", ".join(f"{t}={c.get(t, 0)}" for t in TASKS))


if __name__ == "__main__":
    main()
