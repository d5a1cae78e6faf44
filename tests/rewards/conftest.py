import pytest

from visd_core.data.schema import parse_record



@pytest.fixture
def make_record():
    """A validated Record of `task`; fields default to a small, hand-checkable sample."""
    def make(task, **fields):
        obj = {"id": "r", "task": task, "question": "q?", "video_path": "v.mp4", "answer": "", **fields}
        return parse_record(obj)
    return make
