"""On-disk cache of judge feedback, so a resumed run or a repeated ablation does not pay twice.

One small JSON file per entry, `<root>/<key[:2]>/<key>.json`, keyed by the SHA-256 of (model,
system prompt, user prompt). Writes go to a temporary file in the same folder and are renamed
into place, so readers in any process see a whole entry or none, and several ranks or runs can
share one folder. The size is bounded: past `max_bytes` the least recently used entries (by file
mtime, refreshed on every hit) are deleted down to 80% of the bound. Each process counts its own
writes and rescans the folder only when its count passes the bound, so with N writers the folder
can briefly hold up to about N times the bound. The cache is best effort: an I/O error is logged
once and the sample is judged as if the entry were missing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_EVICT_TO = 0.8      # after eviction the cache holds at most this fraction of max_bytes


def cache_key(model: str, system: str, user: str) -> str:
    return hashlib.sha256(json.dumps([model, system, user], ensure_ascii=False).encode("utf-8")).hexdigest()


class FeedbackCache:
    def __init__(self, root: str | Path, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"judge cache bound must be positive, got {max_bytes} bytes")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._warned = False
        self._size = sum(size for _, size, _ in self._entries())

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        try:
            feedback = json.loads(path.read_text(encoding="utf-8"))["feedback"]
            os.utime(path)                       # mark as recently used for eviction
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            # A torn or foreign file (e.g. after a power loss): drop it and judge again.
            self._warn(f"unreadable judge cache entry {path.name} ({type(e).__name__}); ignoring it")
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass                             # the next write of this key replaces it anyway
            return None
        return feedback if isinstance(feedback, str) else None

    def put(self, key: str, feedback: str) -> None:
        path = self._path(key)
        data = json.dumps({"feedback": feedback}, ensure_ascii=False).encode("utf-8")
        try:
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)            # atomic: readers never see a partial entry
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            self._warn(f"judge cache write failed ({e}); continuing without caching")
            return
        with self._lock:
            self._size += len(data)
            if self._size > self.max_bytes:
                try:
                    self._evict()
                except OSError as e:
                    self._warn(f"judge cache eviction failed ({e}); the cache may exceed its bound")

    def _entries(self):
        """(path, size, mtime) of every file under root, written by any process."""
        for sub in os.scandir(self.root):
            if not sub.is_dir():
                continue
            for e in os.scandir(sub.path):
                try:
                    st = e.stat()
                except FileNotFoundError:        # removed by another process meanwhile
                    continue
                yield Path(e.path), st.st_size, st.st_mtime

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda e: e[2])       # oldest first
        total = sum(size for _, size, _ in entries)
        for path, size, _ in entries:
            if total <= _EVICT_TO * self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
        self._size = total

    def _warn(self, msg: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(msg)
