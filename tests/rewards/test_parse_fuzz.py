"""Totality: parsing and scoring are defined for every string (hypothesis here, bounded; the
100,000-input run is `benchmarks/fuzz_parse.py`, of which a slice runs below)."""
import importlib.util
import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visd_core.config import Reward
from visd_core.rewards import parse_completion, score_group

_spec = importlib.util.spec_from_file_location("fuzz_parse", Path(__file__).parents[2] / "benchmarks" / "fuzz_parse.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

TAGGY = st.lists(st.one_of(st.sampled_from(fuzz.TOKENS), st.text(max_size=6)), max_size=40).map("".join)
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _consistent(c):
    if not c.issues:
        assert c.think is not None and c.answer is not None and not c.truncated
    if c.truncated:
        assert c.think is None or c.answer is None
    assert all(0 <= t < 1e9 for t in c.think_times)
    assert all(0 <= b[0] <= b[2] and 0 <= b[1] <= b[3] for b in c.think_boxes + c.answer_boxes)


@SETTINGS
@given(st.text())
def test_parse_is_total_on_any_text(text):
    _consistent(parse_completion(text))


@SETTINGS
@given(TAGGY)
def test_parse_and_score_are_total_on_tag_soup(text):
    _consistent(parse_completion(text))
    fuzz.check(text)                                  # every task, both spatial modes, benchmark parsers


NAME = st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), min_size=1, max_size=12)
COORD = st.integers(0, 2000)


@SETTINGS
@given(st.lists(st.tuples(NAME, st.lists(st.tuples(COORD, COORD, COORD, COORD), min_size=1, max_size=3),
                          st.integers(0, 100_000)), max_size=6))
def test_written_claims_read_back(claims):
    body, expect = "", []
    for name, raw_boxes, centis in claims:
        boxes = [(min(a, c), min(b, d), max(a, c), max(b, d)) for a, b, c, d in raw_boxes]
        body += f"See <obj>{name}</obj>" + "".join(f"<box>[{x1},{y1},{x2},{y2}]</box>" for x1, y1, x2, y2 in boxes)
        body += f" at <t>{centis / 100}</t>s. "
        expect.append((name.strip(), [tuple(map(float, b)) for b in boxes], centis / 100))
    c = parse_completion(f"<think>{body}</think><answer>ok</answer>")
    assert [(cl.obj, cl.boxes, cl.time) for cl in c.claims] == expect
    assert c.issues == []


@SETTINGS
@given(st.floats(0, 1), TAGGY)
def test_rewards_stay_in_range_at_any_progress(progress, text):
    for record in fuzz.RECORDS:
        r = score_group(record, [text, fuzz.VALID[0]], fuzz.FRAME, progress, Reward(spatial="object_aware"))
        for res in r:
            assert all(v is None or 0.0 <= v <= 1.0 for v in res.components.values())
            assert math.isfinite(res.total) and 0.0 <= res.total <= 6.0


def test_fuzz_script_slice():
    res = fuzz.run(1500, seed=1, big_every=0)
    assert res["failures"] == []
