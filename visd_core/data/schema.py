"""One record schema for the grounded RL and SFT data of Open-o3-Video / VisionCoach / VISD.

A record is one JSON object per line:

    {"id": "s0001", "task": "temporal_mcq", "question": "...", "options": ["A. ...", "B. ..."],
     "answer": "B", "window": [3.2, 5.0], "video_path": "videos/s0001.mp4",
     "key_frames": [{"time": 3.6, "idx": 0}],
     "key_items": {"0": {"red circle": [[0.10, 0.20, 0.30, 0.40]]}},
     "image_size": [640, 480], "reasoning_process": "<think>...</think><answer>...</answer>"}

- `answer`: the MCQ letter, the free-form text, or for visual QA the object name. For temporal QA
  the verified interval lives in `window` and `answer` may be empty.
- `window`: the verified temporal window [s, e] in seconds (temporal QA / temporal MCQ, optional
  elsewhere).
- `key_frames[i].idx` keys `key_items`; boxes are normalized to [0, 1] of the original frame
  (scaled to the model's resized-frame pixels at reward time, DESIGN.md conventions).
- `image_size`: [width, height] of the original video frames.
- `reasoning_process`: the grounded chain-of-thought SFT target (optional).

`parse_record` validates and raises `RecordError` with a one-line reason; the JSONL reader turns
that into a logged, counted skip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from visd_core.tokenizer import SPECIAL_TOKENS

TASKS = (
    "temporal_qa",      # "when": answer is the interval `From <t>s</t>s to <t>e</t>s`
    "temporal_mcq",     # temporal MCQ: interval + `Correct Option: X`
    "visual_qa",        # "where": answer is `<obj>NAME</obj><box>[x1,y1,x2,y2]</box>`
    "st_freeform",      # spatio-temporal free-form QA (ROUGE + grounded reasoning)
    "video_mcq",        # general video multiple choice
    "video_freeform",   # general video free-form (ROUGE)
)
MCQ_TASKS = ("temporal_mcq", "video_mcq")
TEMPORAL_TASKS = ("temporal_qa", "temporal_mcq")


class RecordError(ValueError):
    """A record that cannot be used; the message is the one-line reason.

    `kind` names the reason's category, so the reader can count skips per category:
    "unknown_task", "box_out_of_range", or "invalid" (anything else; the message says what).
    """

    def __init__(self, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind


@dataclass
class KeyFrame:
    time: float   # seconds
    idx: int      # key into Record.key_items


@dataclass
class Record:
    id: str
    task: str
    question: str
    answer: str
    video_path: str
    options: list[str] = field(default_factory=list)
    window: tuple[float, float] | None = None
    key_frames: list[KeyFrame] = field(default_factory=list)
    key_items: dict[int, dict[str, list[list[float]]]] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None     # (width, height) of the original frames
    reasoning_process: str | None = None

    def boxes_at(self, idx: int) -> dict[str, list[list[float]]]:
        """Normalized boxes per object name at key frame `idx` ({} when none)."""
        return self.key_items.get(idx, {})

    def to_json(self) -> dict:
        out = {"id": self.id, "task": self.task, "question": self.question, "options": list(self.options),
               "answer": self.answer, "video_path": self.video_path,
               "key_frames": [{"time": k.time, "idx": k.idx} for k in self.key_frames],
               "key_items": {str(i): {o: [list(b) for b in bs] for o, bs in objs.items()}
                             for i, objs in self.key_items.items()}}
        if self.window is not None:
            out["window"] = list(self.window)
        if self.image_size is not None:
            out["image_size"] = list(self.image_size)
        if self.reasoning_process is not None:
            out["reasoning_process"] = self.reasoning_process
        return out


def _num(x, what: str) -> float:
    try:    # float() first: math.isfinite on a huge JSON integer raises OverflowError
        ok = not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(float(x))
    except OverflowError:
        ok = False
    if not ok:
        raise RecordError(f"{what} must be a finite number, got {x!r}")
    return float(x)


def _str(obj: dict, key: str, required: bool = True) -> str:
    v = obj.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str):
        raise RecordError(f"'{key}' must be a string, got {type(v).__name__}")
    return v


def parse_record(obj) -> Record:
    """Validate one decoded JSON object and build a Record (RecordError on any problem)."""
    if not isinstance(obj, dict):
        raise RecordError(f"record must be a JSON object, got {type(obj).__name__}")
    rid = obj.get("id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid:
        raise RecordError("missing or empty 'id'")
    task = obj.get("task")
    if task not in TASKS:
        raise RecordError(f"unknown task {task!r} (valid: {', '.join(TASKS)})", kind="unknown_task")
    question = _str(obj, "question")
    if not question.strip():
        raise RecordError("empty 'question'")
    answer = obj.get("answer", "")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str):
        raise RecordError(f"'answer' must be a string, got {type(answer).__name__}")
    video_path = _str(obj, "video_path")
    if not video_path:
        raise RecordError("empty 'video_path'")

    options = obj.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise RecordError("'options' must be a list of strings")
    for text in (question, *options):     # record text must never become vision or turn tokens
        for special in SPECIAL_TOKENS:
            if special in text:
                raise RecordError(f"question or option holds the special token {special}")
    if task in MCQ_TASKS:
        if len(options) < 2:
            raise RecordError(f"task {task} needs at least 2 options")
        letter = answer.strip().strip("().[]").upper()[:1]
        if not letter or not ("A" <= letter <= chr(ord("A") + len(options) - 1)):
            raise RecordError(f"answer {answer!r} is not one of the {len(options)} option letters")
        answer = letter

    window = obj.get("window")
    if window is not None:
        if not isinstance(window, (list, tuple)) or len(window) != 2:
            raise RecordError("'window' must be [start, end]")
        s, e = _num(window[0], "window start"), _num(window[1], "window end")
        if s < 0 or e < s:
            raise RecordError(f"'window' [{s}, {e}] must satisfy 0 <= start <= end")
        window = (s, e)
    elif task in TEMPORAL_TASKS:
        raise RecordError(f"task {task} needs a verified 'window'")

    key_frames = []
    for k in obj.get("key_frames") or []:
        if not isinstance(k, dict) or "time" not in k or "idx" not in k:
            raise RecordError("each key frame must be {time, idx}")
        t = _num(k["time"], "key frame time")
        if t < 0:
            raise RecordError(f"key frame time {t} is negative")
        idx = k["idx"]
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise RecordError(f"key frame idx must be an integer, got {idx!r}")
        if any(kf.idx == idx for kf in key_frames):    # idx keys key_items: two frames cannot share one
            raise RecordError(f"key frame idx {idx} appears twice")
        key_frames.append(KeyFrame(time=t, idx=idx))

    key_items: dict[int, dict[str, list[list[float]]]] = {}
    raw_items = obj.get("key_items") or {}
    if not isinstance(raw_items, dict):
        raise RecordError("'key_items' must be an object {frame idx: {object: [boxes]}}")
    known = {k.idx for k in key_frames}
    for fidx, objs in raw_items.items():
        try:
            i = int(fidx)
        except (TypeError, ValueError):
            raise RecordError(f"key_items key {fidx!r} is not a frame index") from None
        if i not in known:
            raise RecordError(f"key_items frame {i} has no entry in key_frames")
        if not isinstance(objs, dict):
            raise RecordError(f"key_items[{i}] must map object names to box lists")
        frame_objs = {}
        for name, boxes in objs.items():
            if not isinstance(boxes, list) or not boxes:
                raise RecordError(f"key_items[{i}][{name!r}] must be a non-empty list of boxes")
            if boxes and all(isinstance(v, (int, float)) for v in boxes):
                boxes = [boxes]     # a single box written without the outer list
            clean = []
            for b in boxes:
                if not isinstance(b, (list, tuple)) or len(b) != 4:
                    raise RecordError(f"box {b!r} of {name!r} must be [x1, y1, x2, y2]")
                x1, y1, x2, y2 = (_num(v, "box coordinate") for v in b)
                if not (0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0):
                    raise RecordError(f"box {list(b)} of {name!r} is out of range (normalized, x1<=x2, y1<=y2)",
                                      kind="box_out_of_range")
                clean.append([x1, y1, x2, y2])
            frame_objs[str(name)] = clean
        key_items[i] = frame_objs

    image_size = obj.get("image_size")
    if image_size is not None:
        if (not isinstance(image_size, (list, tuple)) or len(image_size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)):
            raise RecordError(f"'image_size' must be [width, height] positive integers, got {image_size!r}")
        image_size = (int(image_size[0]), int(image_size[1]))

    rp = obj.get("reasoning_process")
    if rp is not None and not isinstance(rp, str):
        raise RecordError("'reasoning_process' must be a string")

    return Record(id=rid, task=task, question=question, answer=answer, video_path=video_path,
                  options=options, window=window, key_frames=key_frames, key_items=key_items,
                  image_size=image_size, reasoning_process=rp)
