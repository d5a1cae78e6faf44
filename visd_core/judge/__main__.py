"""Judge a file of rollouts with the configured judge, one JSON object a line in and out.

    python -m visd_core.judge --config configs/C.toml --in rollouts.jsonl --out feedback.jsonl \
        [--judge.base_url=http://127.0.0.1:8000/v1 ...]

Input line: {"id": ..., "task", "question", "answer", "options": [...], "output": "<the student's
full completion>", "evidence": {"window": [s, e], "key_frames": [{"time", "idx"}], "key_items":
{...}} (record fields, visd_core/data/schema.py), "frame_size": [w, h] (the resized frame the
student saw, needed when the evidence has boxes), "diagnosis": {Diagnosis fields}}; all but
task, question, answer and output are optional. A line without "diagnosis" is scored by the
verifier (`rewards.reward.score_group`, as at the end of training: progress 1), whose diagnosis
the prompt and the rule judge read. Output line: {"id", "feedback", "source"}, in input order.
Exit status 2 on a bad config or input line, before any call.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from visd_core.config import Reward, load_config
from visd_core.data.schema import RecordError, parse_record
from visd_core.judge import JudgeRequest, build_judge
from visd_core.rewards.diagnosis import Diagnosis
from visd_core.rewards.reward import score_group

CHUNK_PER_WORKER = 4         # samples per worker per judge() call: each call has its own deadline


def parse_line(obj, lineno: int, reward: Reward) -> tuple[str, JudgeRequest]:
    """(id, request) from one input object; ValueError with the reason otherwise."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    output = obj.get("output")
    if not isinstance(output, str):
        raise ValueError("'output' (the student's completion) must be a string")
    evidence = obj.get("evidence") or {}
    if not isinstance(evidence, dict):
        raise ValueError("'evidence' must be an object with window / key_frames / key_items")
    rid = str(obj.get("id", lineno))
    fields = {k: obj.get(k) for k in ("task", "question", "answer", "options") if k in obj}
    # The judge never reads the video; the record schema requires a path, so give it a placeholder.
    record = parse_record({**evidence, **fields, "id": rid, "video_path": "(not used by the judge)"})
    frame_size = obj.get("frame_size")
    if frame_size is not None:
        if (not isinstance(frame_size, list) or len(frame_size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in frame_size)):
            raise ValueError(f"'frame_size' must be [width, height] positive integers, got {frame_size!r}")
        frame_size = tuple(frame_size)
    diag = obj.get("diagnosis")
    if diag is None:
        if frame_size is None and record.key_items:
            raise ValueError("'frame_size' (the resized frame the student saw) is needed to score its boxes")
        # Without boxes to compare the pixel space is unused; any valid size will do.
        size = frame_size or (1, 1)
        diagnosis = score_group(record, [output], size, progress=1.0, cfg=reward)[0].diagnosis
    elif isinstance(diag, dict):
        try:
            diagnosis = Diagnosis(**{"task": record.task, **diag})
        except TypeError as e:
            raise ValueError(f"bad 'diagnosis': {e}") from None
        if diagnosis.gt_window is not None:
            diagnosis.gt_window = tuple(diagnosis.gt_window)
    else:
        raise ValueError("'diagnosis' must be an object of Diagnosis fields")
    return rid, JudgeRequest.from_record(record, output, diagnosis, frame_size)


def read_rollouts(path: Path, reward: Reward) -> list[tuple[str, JudgeRequest]]:
    items = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                items.append(parse_line(json.loads(line), lineno, reward))
            except (ValueError, RecordError) as e:       # JSONDecodeError is a ValueError
                raise ValueError(f"{path}:{lineno}: {e}") from None
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m visd_core.judge", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="TOML config; its [judge] section is used")
    ap.add_argument("--in", dest="inp", required=True, type=Path, help="rollouts JSONL")
    ap.add_argument("--out", required=True, type=Path, help="feedback JSONL to write")
    args, overrides = ap.parse_known_args(argv)
    try:
        cfg = load_config(args.config, overrides)
        items = read_rollouts(args.inp, cfg.reward)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    totals: dict[str, float] = {}
    chunk = max(1, CHUNK_PER_WORKER * cfg.judge.concurrency)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with build_judge(cfg.judge, cfg.dump_folder) as judge, args.out.open("w", encoding="utf-8") as out, \
            tqdm(total=len(items), unit="sample", desc="judge", file=sys.stderr) as bar:
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            batch = judge.judge([req for _, req in part])
            for (rid, _), fb, src in zip(part, batch.feedback, batch.source):
                out.write(json.dumps({"id": rid, "feedback": fb, "source": src}, ensure_ascii=False) + "\n")
            for k, v in batch.metrics.items():
                if not k.startswith("judge/latency") and k != "judge/time_s":
                    totals[k] = totals.get(k, 0) + v
            bar.update(len(part))

    fallbacks = ", ".join(f"{k.removeprefix('judge/fallback_')} {int(v)}" for k, v in totals.items()
                          if k.startswith("judge/fallback_") and v)
    print(f"judged {len(items)} rollouts with the {cfg.judge.kind} judge: "
          f"http {int(totals.get('judge/http_ok', 0))}, cache {int(totals.get('judge/cache_hit', 0))}, "
          f"rule {int(totals.get('judge/rule', 0))}, fallback {int(totals.get('judge/fallback', 0))}"
          f"{f' ({fallbacks})' if fallbacks else ''}, retries {int(totals.get('judge/retries', 0))}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
