"""The judge interface: one batched call per training step, one feedback string per rollout.

A judge turns (question, verified answer, hidden evidence, the student's whole output, the
verifier's `Diagnosis`) into 2-4 sentences of corrective feedback (visd §3.2, Appendix G). The
feedback only enters the teacher's privileged context; it never changes the reward.

Contract every judge keeps: `judge()` returns one string per request, in order, never raises on a
judge fault (a failed sample falls back to the rule judge and is counted), and returns within the
configured deadline.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from visd_core.data.schema import MCQ_TASKS, TASKS, Record
from visd_core.rewards.diagnosis import Diagnosis

# Where a sample's feedback came from (JudgeBatch.source).
SOURCES = ("http", "cache", "rule")


@dataclass
class JudgeRequest:
    task: str                                   # one of visd_core.data.schema.TASKS
    question: str
    answer: str                                 # the verified answer (MCQ letter, text, object name)
    output: str                                 # the student's full completion text
    diagnosis: Diagnosis                        # the verifier's diagnosis of `output`
    options: list[str] = field(default_factory=list)
    window: tuple[float, float] | None = None   # verified temporal window (seconds)
    # Hidden key-frame evidence, sorted by time: (seconds, {object name: [normalized boxes]}).
    key_frames: list[tuple[float, dict[str, list[list[float]]]]] = field(default_factory=list)
    # (width, height) of the resized frame the student saw: evidence boxes are scaled to it so the
    # judge compares them with the student's pixel boxes (DESIGN.md); None keeps them in [0, 1].
    frame_size: tuple[int, int] | None = None

    def __post_init__(self):
        # Checked here so that prompt building and the rule judge, which must not fail, never see bad data.
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r} (valid: {', '.join(TASKS)})")
        letters = [chr(ord("A") + i) for i in range(len(self.options))]
        if self.task in MCQ_TASKS and self.answer not in letters:
            raise ValueError(f"{self.task} answer must be one of the {len(letters)} option letters, "
                             f"got {self.answer!r}")
        if self.window is not None and not (len(self.window) == 2 and 0 <= self.window[0] <= self.window[1]):
            raise ValueError(f"window must be (start, end) with 0 <= start <= end, got {self.window!r}")
        for t, objs in self.key_frames:
            for name, boxes in objs.items():
                if not boxes or any(len(b) != 4 for b in boxes):
                    raise ValueError(f"key frame at {t}s: {name!r} needs a non-empty list of "
                                     "[x1, y1, x2, y2] boxes")
        if self.frame_size is not None and not (len(self.frame_size) == 2 and min(self.frame_size) > 0):
            raise ValueError(f"frame_size must be (width, height), got {self.frame_size!r}")
        self.key_frames = sorted(self.key_frames, key=lambda kf: kf[0])

    @classmethod
    def from_record(cls, record: Record, output: str, diagnosis: Diagnosis,
                    frame_size: tuple[int, int] | None = None) -> "JudgeRequest":
        frames = [(k.time, record.boxes_at(k.idx)) for k in record.key_frames]
        return cls(task=record.task, question=record.question, answer=record.answer, output=output,
                   diagnosis=diagnosis, options=list(record.options), window=record.window,
                   key_frames=frames, frame_size=frame_size)


@dataclass
class JudgeBatch:
    feedback: list[str]                         # one per request, in request order
    source: list[str]                           # one of SOURCES per request
    metrics: dict[str, float]                   # `judge/...` scalars for metrics.jsonl


class Judge(ABC):
    """Batched judge; see the module docstring for the contract."""

    @abstractmethod
    def judge(self, requests: list[JudgeRequest]) -> JudgeBatch:
        ...

    def close(self) -> None:
        """Release threads and connections (a no-op for judges that hold none)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
