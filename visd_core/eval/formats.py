"""Evaluation data in, `EvalItem`s out: the project's JSONL, V-STaR's annotation JSON, Charades-STA's
lines — all mapped to the Record schema (visd_core/data/schema.py), so one runner and one verifier
serve every benchmark.

    data = read_eval_data("V_STaR_test.json", fmt="auto", video_root="videos/")
    data.items      # EvalItem(record, vstar) in file order, video paths resolved (not checked)
    data.skipped    # {reason: [ids]} of entries that cannot become records

jsonl     one Record per line (schema.py), video paths relative to --video-root (default: the
          file's folder). A line may carry `"vstar": {"qid", "part", "chain"}` (below).
charades  Charades-STA's `charades_sta_test.txt`: `<sid> <start> <end>##<sentence>` per line,
          seconds; the video is `<video_root>/<sid>.mp4`. Each line becomes a temporal_qa record
          with id `<sid>#<line number>` (a video has several queries, some repeated).
vstar     V-STaR's `V_STaR_test.json` (github.com/V-STaR-Bench/V-STaR: data/README.md, and the
          fields its inference_demo.py and eval.py read): a JSON array of
              {"vid", "domain", "fps", "width", "height", "frame_count",
               "question", "chain", "object", "answer",            # "what": free-form QA
               "temporal_question", "timestamps": [s, e],          # "when", seconds
               "spatial_question", "spatial_question_2",           # "where", chains 1 and 2
               "bboxes": [{"timestamp", "frame_index", "xmin", "ymin", "xmax", "ymax"}, ...]}
          boxes in pixels of the width x height video. (data/README.md draws each box as
          {"<timestamp>_<frame_index>": {"xmin", ...}}; eval.py reads the flat form; both load.)
          The video is `<video_root>/<vid>.mp4`, else the first such file below video_root (as
          inference_demo.py's find_video). Annotation i becomes five records, asked as V-STaR asks:
              <vid>#<i>/what    st_freeform   question -> answer
              <vid>#<i>/when1   temporal_qa   temporal_question                (chain 1)
              <vid>#<i>/where1  visual_qa     spatial_question + the GT window  (chain 1)
              <vid>#<i>/where2  visual_qa     spatial_question_2 + the box count (chain 2)
              <vid>#<i>/when2   temporal_qa   temporal_question + the GT boxes without times (chain 2)
          each with the annotation's window and boxes (normalized) as its verified evidence and
          `vstar = {"qid": "<vid>#<i>", "part": what|when|where, "chain": None|1|2}`, from which
          the runner computes V-STaR's chain metrics (vstar.py). A "where" answer gives a box per
          moment, `<obj>…</obj><box>[…]</box>at<t>T</t>s`, as vstar.where_iou reads it.
"""
from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace

from visd_core.data.schema import Record, RecordError, parse_record

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "vstar", "charades")
VSTAR_PARTS = ("what", "when", "where")
# Appended to V-STaR's "where" questions: the per-moment answer vstar.where_iou reads.
WHERE_FORMAT = ("Answer with one box per moment, "
                "<obj>object_name</obj><box>[x1,y1,x2,y2]</box>at<t>time_in_seconds</t>s each.")


@dataclass
class EvalItem:
    record: Record                   # video_path resolved against the video root
    vstar: dict | None = None        # {"qid", "part", "chain"}: V-STaR chain annotation, or None


@dataclass
class EvalData:
    format: str
    items: list[EvalItem] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))   # reason -> ids
    ids: set[str] = field(default_factory=set)

    def add(self, item: EvalItem) -> None:
        if item.record.id in self.ids:
            self.skipped["duplicate_id"].append(item.record.id)
            return
        self.ids.add(item.record.id)
        self.items.append(item)


def detect_format(path: str) -> str:
    """By extension (.jsonl, .json, .txt), else by the first non-blank character: `[` V-STaR's
    array, `{` JSONL, anything else a Charades-STA line."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jsonl", ".json", ".txt"):
        return {".jsonl": "jsonl", ".json": "vstar", ".txt": "charades"}[ext]
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    return "vstar" if head.startswith("[") else "jsonl" if head.startswith("{") else "charades"


def read_eval_data(path: str, fmt: str = "auto", video_root: str | None = None) -> EvalData:
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r} is not one of auto, {', '.join(FORMATS)}")
    root = video_root if video_root is not None else os.path.dirname(os.path.abspath(path))
    data = EvalData(format=fmt)
    {"jsonl": _read_jsonl, "vstar": _read_vstar, "charades": _read_charades}[fmt](path, root, data)
    return data


def _label(obj, where: str) -> str:
    """The id a skipped entry is listed under: its own when it has one, else `file:line`."""
    rid = obj.get("id") if isinstance(obj, dict) else None
    return str(rid) if isinstance(rid, (str, int)) and not isinstance(rid, bool) and rid != "" else where


# ---------------------------------------------------------------------------- jsonl
def vstar_tag(v) -> dict | None:
    """A record's V-STaR chain annotation, validated: None, or {"qid", "part", "chain"}."""
    if v is None:
        return None
    if not isinstance(v, dict) or v.get("part") not in VSTAR_PARTS:
        raise RecordError(f"'vstar' must be {{qid, part: {'|'.join(VSTAR_PARTS)}, chain}}, got {v!r}")
    qid, chain = v.get("qid"), v.get("chain")
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or qid == "":
        raise RecordError(f"'vstar.qid' must be a non-empty string or an integer, got {qid!r}")
    ok = chain is None if v["part"] == "what" else chain in (1, 2) and not isinstance(chain, bool)
    if not ok:
        raise RecordError(f"'vstar.chain' must be 1 or 2 for when/where and null for what, got {chain!r}")
    return {"qid": str(qid), "part": v["part"], "chain": chain}


def _read_jsonl(path: str, root: str, data: EvalData) -> None:
    name = os.path.basename(path)
    with open(path, "rb") as f:      # bytes: a line of bad UTF-8 is one bad line, not a crash
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{name}:{lineno}"
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                data.skipped["bad_json"].append(where)
                continue
            try:
                rec, tag = parse_record(obj), vstar_tag(obj.get("vstar"))
            except RecordError as e:
                data.skipped[e.kind].append(_label(obj, where))
                continue
            data.add(EvalItem(replace(rec, video_path=os.path.join(root, rec.video_path)), tag))


# ---------------------------------------------------------------------------- Charades-STA
def _read_charades(path: str, root: str, data: EvalData) -> None:
    name = os.path.basename(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            head, sep, sentence = line.partition("##")
            fields = head.split()
            rid = f"{fields[0]}#{lineno}" if fields else f"{name}:{lineno}"
            try:
                if not sep or len(fields) != 3:
                    raise RecordError("need `<sid> <start> <end>##<sentence>`")
                rec = parse_record({
                    "id": rid, "task": "temporal_qa", "answer": "",
                    "question": f"When does the following happen in the video: {sentence.strip().rstrip('.')}?",
                    "video_path": os.path.join(root, f"{fields[0]}.mp4"),
                    "window": [float(fields[1]), float(fields[2])]})     # float(): ValueError on junk
            except ValueError as e:
                data.skipped[getattr(e, "kind", "invalid")].append(rid)
                continue
            data.add(EvalItem(rec))


# ---------------------------------------------------------------------------- V-STaR
class _VideoFinder:
    """`<root>/<vid>.mp4`, else the first file of that name below root (one walk, sorted)."""

    def __init__(self, root: str):
        self.root, self.index = root, None

    def find(self, vid: str) -> str:
        name = vid if vid.endswith(".mp4") else f"{vid}.mp4"
        direct = os.path.join(self.root, name)
        if os.path.isfile(direct):
            return direct
        if self.index is None:
            self.index = {}
            for d, dirs, files in os.walk(self.root):
                dirs.sort()
                for fn in sorted(files):
                    self.index.setdefault(fn, os.path.join(d, fn))
        return self.index.get(name, direct)     # missing: the runner skips it as missing_video


def _vstar_boxes(entries: list, fps) -> list[tuple[float, list[float]]]:
    """(time in seconds, [x1, y1, x2, y2] pixels) per annotated box, either spelling."""
    out = []
    for e in entries:
        if "xmin" in e:
            t = e["timestamp"] if "timestamp" in e else e["frame_index"] / fps
            pairs = [(t, e)]
        else:                                     # {"<timestamp>_<frame_index>": {xmin, ...}, ...}
            pairs = [(float(str(k).rsplit("_", 1)[0]), b) for k, b in e.items()]
        for t, b in pairs:
            x1, y1, x2, y2 = (float(b[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            out.append((float(t), [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]))
    return out


def vstar_records(a: dict, qid: str, video: str) -> list[EvalItem]:
    """The five records of one V-STaR annotation (module docstring); RecordError, KeyError,
    TypeError or ValueError when it lacks or garbles a field."""
    w, h = a["width"], a["height"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)):
        raise RecordError(f"width and height must be positive integers, got {w!r}, {h!r}")
    s, e = (float(t) for t in a["timestamps"])
    boxes = _vstar_boxes(a["bboxes"], a.get("fps"))
    obj = str(a.get("object") or "object")
    clip = lambda v: min(max(v, 0.0), 1.0)       # noqa: E731  (annotations overhang the frame by a pixel)
    times = sorted({t for t, _ in boxes})
    evidence = {"video_path": video, "window": [s, e], "image_size": [w, h],
                "key_frames": [{"time": t, "idx": i} for i, t in enumerate(times)],
                "key_items": {str(i): {obj: [[clip(b[0] / w), clip(b[1] / h), clip(b[2] / w), clip(b[3] / h)]
                                             for bt, b in boxes if bt == t]} for i, t in enumerate(times)}}
    n, px = len(boxes), json.dumps([[round(v) for v in b] for _, b in boxes], separators=(",", ":"))
    parts = [  # (id suffix, part, chain, task, question, answer): V-STaR's five questions and their conditions
        ("what", "what", None, "st_freeform", a["question"], str(a["answer"])),
        ("when1", "when", 1, "temporal_qa", a["temporal_question"], ""),
        ("where1", "where", 1, "visual_qa", f"{a['spatial_question']} It happens from {s:g}s to {e:g}s; give the "
                                            f"object's box at each whole second of that time. {WHERE_FORMAT}", obj),
        ("where2", "where", 2, "visual_qa", f"{a['spatial_question_2']} Give {n} box(es), at the moments related to "
                                            f"the question. {WHERE_FORMAT}", obj),
        ("when2", "when", 2, "temporal_qa", f"{a['temporal_question']} There are {n} bounding boxes of the key object "
                                            f"related to the question, in pixels of the {w}x{h} video and without "
                                            f"their times: {px}.", ""),
    ]
    return [EvalItem(parse_record({"id": f"{qid}/{suffix}", "task": task, "question": q, "answer": ans, **evidence}),
                     {"qid": qid, "part": part, "chain": chain})
            for suffix, part, chain, task, q, ans in parts]


def _read_vstar(path: str, root: str, data: EvalData) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            anns = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not V-STaR's annotation JSON ({e})") from None
    if not isinstance(anns, list):
        raise ValueError(f"{path}: V-STaR's annotation file is a JSON array, got {type(anns).__name__}")
    videos = _VideoFinder(root)
    for i, a in enumerate(anns):
        qid = f"{a.get('vid')}#{i}" if isinstance(a, dict) else f"#{i}"
        try:
            items = vstar_records(a, qid, videos.find(str(a["vid"])))
        except (RecordError, KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as e:
            log.warning("%s: annotation %d (%s) skipped: %s: %s", path, i, qid, type(e).__name__, e)
            data.skipped[getattr(e, "kind", "invalid")].append(qid)
            continue
        for item in items:
            data.add(item)
