"""Fuzz the completion parser and the whole reward path with random and mutated completions.

    .venv/bin/python benchmarks/fuzz_parse.py --n 100000 --seed 0

Inputs: mutations of well-formed grounded completions (cut, duplicated, spliced, tags inserted
or dropped), token soup over tags (nested, unclosed, stray, unknown), numbers (huge, negative,
NaN/inf text, 1e999, 1.2.3, 10k-digit runs), brackets, non-ASCII and control characters, and
every `--big-every` inputs one megabyte-scale adversarial string (a megabyte of `<t>`, of `[`,
of digits, of claims, …). Each input is parsed and scored for every task with both spatial
modes (`score_group`), and read by the benchmark parsers; any exception, any component outside
[0, 1] or a non-finite total is a failure. Prints the count, the failures, and the slowest parse and full check.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visd_core.config import Reward                                  # noqa: E402
from visd_core.data.schema import parse_record                       # noqa: E402
from visd_core.eval import charades, mcq, vstar                      # noqa: E402
from visd_core.rewards import parse_completion, score_group          # noqa: E402

_COMMON = {"question": "q?", "video_path": "v.mp4", "image_size": [640, 480]}
_FRAMES = {"key_frames": [{"time": 1.0, "idx": 0}, {"time": 4.5, "idx": 1}],
           "key_items": {"0": {"red circle": [[0.1, 0.1, 0.3, 0.3]]},
                         "1": {"red circle": [[0.2, 0.1, 0.4, 0.3]], "blue box": [[0.5, 0.5, 0.9, 0.9]]}}}
RECORDS = [parse_record({"id": task, "task": task, **_COMMON, **extra}) for task, extra in [
    ("temporal_qa", {"answer": "", "window": [2.0, 5.5]}),
    ("temporal_mcq", {"answer": "B", "options": ["A. x", "B. y", "C. z"], "window": [2.0, 5.5]}),
    ("visual_qa", {"answer": "red circle", "key_frames": [{"time": 0.0, "idx": 0}],
                   "key_items": {"0": {"red circle": [[0.1, 0.1, 0.3, 0.3]]}}}),
    ("st_freeform", {"answer": "the red circle moves right", "window": [0.5, 5.0], **_FRAMES}),
    ("video_mcq", {"answer": "C", "options": ["A. x", "B. y", "C. z", "D. w"]}),
    ("video_freeform", {"answer": "a person opens the door"}),
]]
CONFIGS = [Reward(spatial=s, multi_instance=m) for s in ("max_iou", "object_aware") for m in ("max", "mean")]
FRAME = (448, 336)

VALID = [
    "<think>The <obj>red circle</obj><box>[45,34,134,101]</box>at<t>1.0</t>s moves to "
    "<obj>red circle</obj><box>[90,34,179,101]</box><box>[224,168,403,302]</box> at <t>4.5</t>s."
    "</think><answer>the red circle moves right</answer>",
    "<think>It starts at <t>2.1</t>s and ends at <t>5.4</t>s.</think>"
    "<answer>From <t>2.0</t>s to <t>5.5</t>s\nCorrect Option: (B)</answer>",
    "<think>The <obj>red circle</obj><box>[45,34,134,101]</box> is left.</think>"
    "<answer><obj>red circle</obj><box>[45,34,134,101]</box></answer>",
    "<think>Looking at the video.</think><answer>[C]</answer>",
]
TOKENS = ["<think>", "</think>", "<answer>", "</answer>", "<obj>", "</obj>", "<box>", "</box>", "<t>",
          "</t>", "<T>", "<thinking>", "</ans", "<", ">", "/", "at", " at ", "s", " to ", "From ", "-", "–",
          "[", "]", "[1,2,3,4]", "[0, 0, 0, 0]", "[5,5,1,1]", "[-3,2,9,9]", "[1,2,3]", "[1,2,3,4,5]",
          ",", ".", " ", "\n", "\t", "0", "1.5", "-2", "+7", "1e999", "-1e999", "1e9", "1e10", "NaN", "nan",
          "inf", "-inf", "Infinity", "1.2.3", "..", "0x1F", "9" * 400, "9" * 10000, "1_000", "½", "٣",
          "Correct Option:", "correct option: (B)", "A", "B.", "(C)", "[D]", "Z", "red circle", "circle",
          "blue", "", "日本語", "🎥", "\u202e", "\u0301", "\x00", "\ud800", "\ufffd", "ß", "İ"]


def _mutate(rng: random.Random, s: str) -> str:
    for _ in range(rng.randint(1, 6)):
        i, j = sorted(rng.randrange(len(s) + 1) for _ in range(2))
        op = rng.randrange(6)
        if op == 0:
            s = s[:i] + s[j:]                                        # delete a span
        elif op == 1:
            s = s[:i] + rng.choice(TOKENS) + s[i:]                   # insert a token
        elif op == 2:
            s = s[:j] + s[i:j] + s[j:]                               # duplicate a span
        elif op == 3:
            s = s[:i]                                                # truncate
        elif op == 4:
            s = s[:i] + rng.choice(VALID) + s[i:]                    # nest a whole completion
        else:
            s = s[:i] + s[i:j][::-1] + s[j:]                         # reverse a span
    return s


def _soup(rng: random.Random) -> str:
    return "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 80)))


def _big(rng: random.Random) -> str:
    mb = 1 << 20
    kind = rng.randrange(9)
    if kind == 0:
        return "<t>" * (mb // 3)
    if kind == 1:
        return "<think>" + "<obj>a</obj><box>[1,2,3,4]</box>at<t>1</t>s" * (mb // 40) + "</think><answer>x</answer>"
    if kind == 2:
        return "[" * mb
    if kind == 3:
        return "<answer>" + "9" * mb + "</answer>"
    if kind == 4:
        return "<think>" + " " * mb + "at" + "<t>1.0</t>s" * 10
    if kind == 5:
        return "<think></think><answer>" + "word " * (mb // 5) + "</answer>"
    if kind == 6:
        return "<t>" + "1" * mb + "</t>s to <t>2</t>s"
    if kind == 7:
        return "<obj>" + "</obj><box>" * (mb // 11)
    out, size = [], 0
    while size < mb:
        out.append(rng.choice(TOKENS))
        size += len(out[-1])
    return "".join(out)


def make_input(rng: random.Random, i: int, big_every: int) -> str:
    if big_every and i % big_every == big_every - 1:
        return _big(rng)
    r = rng.random()
    if r < 0.5:
        return _mutate(rng, rng.choice(VALID))
    if r < 0.9:
        return _soup(rng)
    return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(0, 200)))


def check(text: str) -> None:
    """Score for every task and mode, and read as a benchmark output; raise on any fault."""
    for record in RECORDS:
        for cfg in CONFIGS:
            for r in score_group(record, [text], FRAME, 0.3, cfg):
                for k, v in r.components.items():
                    if v is not None and not (0.0 <= v <= 1.0):
                        raise AssertionError(f"{record.task}/{cfg.spatial}/{cfg.multi_instance}: {k} = {v!r} "
                                             "outside [0, 1]")
                if not math.isfinite(r.total):
                    raise AssertionError(f"{record.task}: total {r.total!r}")
    charades.segment_of_output(text)
    mcq.chosen_letter(text)
    vstar.where_iou(text, [(1.0, [0.1, 0.1, 0.3, 0.3])], FRAME)


def run(n: int, seed: int = 0, big_every: int = 1000) -> dict:
    """Fuzz n inputs; the slowest `parse_completion` and the slowest full check (15 parses and
    12 scorings of the same input) are timed separately."""
    rng = random.Random(seed)
    failures, parse_max, check_max, longest, total = [], 0.0, 0.0, 0, 0.0
    for i in range(n):
        text = make_input(rng, i, big_every)
        longest = max(longest, len(text))
        t0 = time.perf_counter()
        try:
            parse_completion(text)
            t1 = time.perf_counter()
            check(text)
        except Exception as e:                                       # noqa: BLE001 - the point of a fuzzer
            t1 = t0
            failures.append(f"input {i} (len {len(text)}, {text[:60]!r}...): {type(e).__name__}: {e}")
        t2 = time.perf_counter()
        parse_max, check_max, total = max(parse_max, t1 - t0), max(check_max, t2 - t1), total + t2 - t0
    return {"count": n, "failures": failures, "parse_max_s": parse_max, "check_max_s": check_max,
            "longest": longest, "total_s": total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--big-every", type=int, default=1000, help="one megabyte input every this many (0: none)")
    args = ap.parse_args()
    res = run(args.n, args.seed, args.big_every)
    for f in res["failures"][:20]:
        print("FAIL", f)
    print(f"{res['count']} inputs (longest {res['longest']:,} chars), {len(res['failures'])} failures; "
          f"slowest parse_completion {res['parse_max_s'] * 1e3:.1f} ms; slowest full check "
          f"({len(RECORDS)} tasks x {len(CONFIGS)} spatial modes + 3 benchmark parsers) "
          f"{res['check_max_s'] * 1e3:.0f} ms; mean per input {res['total_s'] / max(1, res['count']) * 1e3:.3f} ms; "
          f"total {res['total_s']:.0f} s")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
