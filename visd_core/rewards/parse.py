"""Parse a grounded completion: `<think>…</think><answer>…</answer>` with evidence tags.

    <think>… <obj>red circle</obj><box>[12,40,88,120]</box>at<t>3.6</t>s …</think>
    <answer>From <t>3.2</t>s to <t>5.0</t>s</answer>

Total and linear: `parse_completion` returns a `Completion` for every string and never raises.
The spans come from `str.find`; tag values from regexes whose repeats are `[^<]*` between
literal tags (a repeat cannot run past the next `<`, so no input makes them backtrack more than
linearly) or bounded (`{0,40}`), and valid times and boxes are read by one scan each, so a
megabyte of adversarial text costs tens of milliseconds (benchmarks/fuzz_parse.py measures it).
A tag's value therefore never contains `<`; a pair of tags around one does not count as a pair.
Times and pixel coordinates are non-negative plain decimals below 1e9 (`12`, `3.5`, `.5`): a
sign, an exponent, NaN/inf text or a longer number is not a pixel or a time in seconds, so it is
malformed — and box areas stay below 1e18, so every IoU is finite.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from visd_core.rewards.iou import Box, Interval

_DECIMAL = r"\s*(\d{1,9}(?:\.\d{0,16})?|\.\d{1,16})\s*"
_BOX_DECIMALS = r"\s*\[" + ",".join([_DECIMAL] * 4) + r"\]\s*"
_TIME = re.compile(_DECIMAL, re.ASCII)          # ASCII: no fullwidth or Arabic-Indic digits
_BOX_VALUE = re.compile(_BOX_DECIMALS, re.ASCII)
# Every valid <t> / <box> of a text in one scan, each with its raw value (the lookup key).
_VALID_T = re.compile(f"<t>({_DECIMAL})</t>", re.ASCII)
_VALID_BOX = re.compile(f"<box>({_BOX_DECIMALS})</box>", re.ASCII)
_MAX_VALUE_CHARS = 200                           # longer tag values are malformed
# A well-formed grounding tag and its value; one pattern per name keeps a literal prefix to scan for.
_PAIRS = {name: re.compile(f"<{name}>([^<]*)</{name}>") for name in ("obj", "box", "t")}
_OBJ, _BOX, _T = _PAIRS["obj"], _PAIRS["box"], _PAIRS["t"]
# A claim: one object, its first box, any further boxes (whitespace or commas between), then
# `at <t>T</t>`. The first box has its own group: most claims have one, and need no second scan.
_CLAIM = re.compile(r"<obj>([^<]*)</obj>[\s,]*<box>([^<]*)</box>((?:[\s,]*<box>[^<]*</box>)*)"
                    r"(?:\s*(?i:at)\s*<t>([^<]*)</t>)?")
# `From <t>s</t>s to <t>e</t>s` (DESIGN.md answer convention) and the bracket form `[s, e]`.
_T_INTERVAL = re.compile(r"<t>([^<]{0,40})</t>\s{0,8}s?\s{0,8}(?:to|-|–)\s{0,8}<t>([^<]{0,40})</t>",
                         re.IGNORECASE)
_BRACKET_INTERVAL = re.compile(r"\[([^\[\],]{0,40}),([^\[\],]{0,40})\]")
# Spelled-out cases rather than IGNORECASE, which makes the scan of a long answer 2x slower.
_CORRECT_OPTION = re.compile(r"(?:Correct|correct|CORRECT)\s{0,4}(?:Option|option|OPTION)\s{0,4}:?\s{0,4}([^\n]{0,16})")
# An option letter as the answer: `B`, `B.`, `(B)`, `[B]`, `B) text`, `B: text` — not `B text`
# (a sentence that starts with a capital) and not lower case.
_LETTER = re.compile(r"\s*[(\[]?\s*([A-Z])\s*(?:[)\].:,]|$)")


@dataclass(slots=True)
class Claim:
    """One evidence tuple from <think>: an object, its box(es), and the time it was seen."""
    obj: str
    boxes: list[Box]                             # valid boxes only (malformed ones are dropped)
    time: float | None                           # None: no valid `at <t>T</t>s` after the boxes


@dataclass
class Completion:
    think: str | None = None                     # text of the first closed <think> span
    answer: str | None = None                    # text of the closed <answer> span after it
    think_times: list[float] = field(default_factory=list)   # every valid <t> inside <think>
    think_boxes: list[Box] = field(default_factory=list)     # every valid <box> inside <think>
    claims: list[Claim] = field(default_factory=list)        # <obj><box>…at<t> tuples in <think>
    answer_interval: Interval | None = None      # as written; may be inverted (then it scores 0)
    answer_boxes: list[Box] = field(default_factory=list)
    answer_objects: list[str] = field(default_factory=list)
    correct_option: str | None = None            # letter after `Correct Option:` (temporal MCQ)
    letter: str | None = None                    # the answer read as a bare option letter
    truncated: bool = False                      # a <think> or <answer> was opened and never closed
    issues: list[str] = field(default_factory=list)          # structural format problems


# ---------------------------------------------------------------------------- values
def parse_time(text: str) -> float | None:
    """Seconds, a non-negative decimal, or None."""
    m = _TIME.fullmatch(text) if len(text) <= _MAX_VALUE_CHARS else None
    return float(m.group(1)) if m else None


def parse_box(text: str) -> Box | None:
    """`[x1, y1, x2, y2]`, pixels with x1 <= x2 and y1 <= y2, or None."""
    m = _BOX_VALUE.fullmatch(text) if len(text) <= _MAX_VALUE_CHARS else None
    if not m:
        return None
    x1, y1, x2, y2 = map(float, m.groups())
    return (x1, y1, x2, y2) if x1 <= x2 and y1 <= y2 else None


def parse_letter(text: str) -> str | None:
    """The option letter an answer names (tolerant of `B`, `B.`, `(B)`, `[B]`)."""
    m = _LETTER.match(text)
    return m.group(1) if m else None


def parse_interval(text: str) -> Interval | None:
    """The first `<t>s</t>s to <t>e</t>s` whose two times are valid, else the first `[s, e]`."""
    for pattern in (_T_INTERVAL, _BRACKET_INTERVAL):
        for m in pattern.finditer(text):
            s, e = parse_time(m.group(1)), parse_time(m.group(2))
            if s is not None and e is not None:
                return (s, e)
    return None


def parse_correct_option(text: str) -> str | None:
    m = _CORRECT_OPTION.search(text)
    return parse_letter(m.group(1)) if m else None


def _claims(text: str, time_of, box_of) -> list[Claim]:
    out = []
    for name, first_box, more_boxes, time_text in _CLAIM.findall(text):
        values = [first_box, *_BOX.findall(more_boxes)] if more_boxes else [first_box]
        boxes = [b for b in map(box_of, values) if b is not None]
        if boxes:                                # a claim whose boxes are all malformed is dropped
            out.append(Claim(obj=name.strip(), boxes=boxes, time=time_of(time_text) if time_text else None))
    return out


def parse_claims(text: str) -> list[Claim]:
    """Every `<obj>N</obj><box>[…]</box>(<box>[…]</box>)*at<t>T</t>s` claim in a span of text
    (time None when the claim has no valid `at <t>T</t>`)."""
    return _claims(text, parse_time, parse_box)


def answer_or_text(text: str) -> str:
    """The closed <answer> span of a raw model output, or the whole output when it has none
    (benchmarks score models that do not use the tags)."""
    c = parse_completion(text)
    return c.answer if c.answer is not None else text


# ---------------------------------------------------------------------------- structure
def _valid_boxes(text: str) -> dict[str, Box]:
    """Raw value -> box for every valid <box> of the text (x1 <= x2 and y1 <= y2)."""
    out = {}
    for value, a, b, c, d in _VALID_BOX.findall(text):
        x1, y1, x2, y2 = float(a), float(b), float(c), float(d)
        if x1 <= x2 and y1 <= y2:
            out[value] = (x1, y1, x2, y2)
    return out


def _grounding_issues(text: str, found: dict[str, list[str]], times: dict, boxes: dict) -> list[str]:
    """Balanced, non-nested <obj>/<box>/<t>, and every <box>/<t> value valid. A pair's value
    holds no `<`, so a tag is balanced exactly when all its openings and closings are in pairs;
    a nested tag or one straddling </think> is not."""
    issues = [f"unbalanced <{name}> tags" for name, pairs in found.items()
              if text.count(f"<{name}>") != len(pairs) or text.count(f"</{name}>") != len(pairs)]
    if any(v not in boxes for v in found["box"]):
        issues.append("malformed box (need [x1,y1,x2,y2] pixels with x1<=x2, y1<=y2)")
    if any(v not in times for v in found["t"]):
        issues.append("malformed timestamp (need <t>seconds</t>)")
    return issues


def parse_completion(text: str) -> Completion:
    """Everything the rewards and the diagnosis read from one completion (never raises)."""
    c = Completion()
    unclosed = set()
    # Every well-formed tag value, and the valid ones parsed in one scan each: the spans below are
    # substrings, so a value missing from `times` / `boxes` is a malformed one.
    found = {name: pair.findall(text) for name, pair in _PAIRS.items()}
    times = {v: float(t) for v, t in _VALID_T.findall(text)}
    boxes = _valid_boxes(text)

    # <think>: the first opening tag and the first closing tag after it.
    th_open = text.find("<think>")
    th_close = text.find("</think>", th_open + 7) if th_open >= 0 else -1
    if th_open < 0:
        c.issues.append("missing <think>")
    elif th_close < 0:
        unclosed.add("think")
    else:
        c.think = think = text[th_open + 7:th_close]
        c.think_times = [v for v in map(times.get, _T.findall(think)) if v is not None]
        c.think_boxes = [v for v in map(boxes.get, _BOX.findall(think)) if v is not None]
        c.claims = _claims(think, times.get, boxes.get)

    # <answer>: the first after </think> (anywhere after <think> when that is never closed).
    after = th_close + 8 if th_close >= 0 else th_open + 7 if th_open >= 0 else 0
    an_open = text.find("<answer>", after)
    an_close = text.find("</answer>", an_open + 8) if an_open >= 0 else -1
    if an_open < 0:
        if "think" in unclosed:                  # generation stopped inside <think>
            c.truncated = True
        elif "<answer>" in text:
            c.issues.append("<answer> before </think>")
        else:
            c.issues.append("missing <answer> (no final answer)")
    elif an_close < 0:
        unclosed.add("answer")
        c.truncated = True
    else:
        c.answer = ans = text[an_open + 8:an_close]
        if not ans.strip():
            c.issues.append("empty <answer> (no final answer)")
        c.answer_interval = parse_interval(ans)
        c.answer_boxes = [v for v in map(boxes.get, _BOX.findall(ans)) if v is not None]
        c.answer_objects = [name.strip() for name in _OBJ.findall(ans)]
        c.correct_option = parse_correct_option(ans)
        c.letter = parse_letter(ans)

    # One think then one answer, nothing but whitespace around them (visd §C.1 "paired tags").
    for name in ("think", "answer"):
        n_open, n_close = text.count(f"<{name}>"), text.count(f"</{name}>")
        if name in unclosed:
            c.issues.append(f"unclosed <{name}>" + (" (output truncated)" if c.truncated else ""))
        if n_open > 1:
            c.issues.append(f"more than one <{name}> block")
        elif n_open < n_close:
            c.issues.append(f"stray </{name}>")
    if c.think is not None and c.answer is not None:
        if text[:th_open].strip() or text[th_close + 8:an_open].strip() or text[an_close + 9:].strip():
            c.issues.append("text outside <think>/<answer>")
    c.issues += _grounding_issues(text, found, times, boxes)
    return c
