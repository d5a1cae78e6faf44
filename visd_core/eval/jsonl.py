"""Reading the evaluation CLI's JSONL inputs: every problem is an `InputError` naming file and line."""
from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path


class InputError(ValueError):
    """A bad input line; the message starts with `path:line:`."""


def read_objects(path: str | Path) -> Iterator[tuple[str, dict]]:
    """(`path:line`, object) for each non-blank line, which must hold one JSON object."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: invalid JSON: {e.msg}") from None
            if not isinstance(obj, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield where, obj


def number(obj: dict, key: str, where: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise InputError(f"{where}: {key!r} must be a finite number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def identifier(obj: dict, key: str, where: str) -> str:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "":
        raise InputError(f"{where}: {key!r} must be a non-empty string or an integer, got {v!r}")
    return str(v)


def segment(obj: dict, where: str) -> tuple[float, float]:
    v = obj.get("segment")
    if not isinstance(v, list) or len(v) != 2:
        raise InputError(f"{where}: 'segment' must be [start, end], got {v!r}")
    return (number({"start": v[0]}, "start", where), number({"end": v[1]}, "end", where))
