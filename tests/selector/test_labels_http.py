"""The labels CLI against real HTTP servers on 127.0.0.1 (tests/judge/fake_openai.py): a scripted
proxy reasoner that answers well only under one visual prompt makes that prompt the label; faults
(500s, 429 with Retry-After, timeouts, garbage) leave replies missing, counted by cause, never a
crash; reruns resume, and a cached reply is never paid for twice."""
import base64
import json
import re

import pytest

from tests.judge.fake_openai import FakeOpenAI
from tests.visual_prompts.tiny_clip import save_tiny_clip
from visd_core.selector.__main__ import main
from visd_core.visual_prompts import HINTS

KEY_ENV, SECRET = "VISD_TEST_PROXY_KEY", "sk-proxy-test-0123"
GOOD = "darken"                        # the only kind the scripted reasoner answers well under
WRONG = "<think>I cannot tell.</think><answer>Z</answer>"


def user_text(body) -> str:
    return "\n".join(p["text"] for p in body["messages"][1]["content"] if p["type"] == "text")


def scripted(records, garbage=()):
    """content(key, body): the record's own grounded SFT target (correct, boxes in the 112x84 frames
    the reasoner is shown) under the GOOD prompt's hint, a wrong answer otherwise; an off-format
    reply for the (record id, kind) pairs in `garbage`."""
    def content(key, body):
        text = user_text(body)
        rid = re.search(r"\[rec:(\w+)\]", text).group(1)
        if any(rid == r and (HINTS[k] in text if HINTS[k] else not any(h and h in text for h in HINTS.values()))
               for r, k in garbage):
            return "Sorry, I can only describe the images."
        return records[rid]["reasoning_process"] if HINTS[GOOD] in text else WRONG
    return content


def run(data, out, *urls, extra=()):
    args = ["labels", "--data", str(data), "--out", str(out), "--max-pixels", "9408", "--api-key-env", KEY_ENV,
            "--no-progress", "--max-retries", "1", "--timeout-s", "0.5", "--concurrency", "4"]
    for u in urls:
        args += ["--reasoner", f"{u}|proxy-{len(args)}"]
    return main(args + list(extra))


def lines(out):
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def test_label_is_the_one_kind_the_reasoner_answers_well_under(synthetic, tmp_path, api_key):
    _, data, records = synthetic
    clip = save_tiny_clip(str(tmp_path / "clip"))
    with FakeOpenAI(content=scripted(records)) as server:
        assert run(data, tmp_path / "labels.jsonl", server.url, extra=["--limit", "3", "--clip-path", clip]) == 0
    got = lines(tmp_path / "labels.jsonl")
    assert [g["id"] for g in got] == list(records)[:3]
    assert all(g["label"] == GOOD for g in got)
    for g in got:
        assert set(g["scores"]) == {"api_prompt", "circle", "darken", "numpro", "raw"}
        assert g["scores"][GOOD]["A"] > 0 and all(s["n"] == 1 for s in g["scores"].values())
        assert all(s["A"] + s["G"] < g["scores"][GOOD]["A"] + g["scores"][GOOD]["G"]
                   for k, s in g["scores"].items() if k != GOOD)
    assert len(server.requests) == 3 * 5
    req = server.requests[0]
    assert req["headers"]["Authorization"] == f"Bearer {SECRET}" and req["path"] == "/v1/chat/completions"
    parts = req["body"]["messages"][1]["content"]
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    rid = re.search(r"\[rec:(\w+)\]", user_text(req["body"])).group(1)
    assert len(images) == len(records[rid]["key_frames"])           # the key frames, one image each
    png = base64.b64decode(images[0].split(",", 1)[1])
    assert images[0].startswith("data:image/png;base64,") and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<obj>OBJECT</obj><box>[x1,y1,x2,y2]</box>at<t>TIME</t>s" in user_text(req["body"])
    assert "112x84 pixels" in user_text(req["body"])


def test_faults_are_counted_and_a_rerun_finishes_the_job(synthetic, tmp_path, api_key, capsys):
    _, data, records = synthetic
    ids = list(records)
    script = {f"[rec:{ids[1]}]": ["500"], f"[rec:{ids[2]}]": ["429", "ok"], f"[rec:{ids[3]}]": ["nonjson"],
              f"[rec:{ids[4]}]": ["slow"]}
    out = tmp_path / "labels.jsonl"
    with FakeOpenAI(script, content=scripted(records, garbage=[(ids[5], "circle")]), slow_s=1.0,
                    retry_after="0.3") as server:
        assert run(data, out, server.url, extra=["--limit", "6"]) == 0
    err = capsys.readouterr().err
    got = {g["id"]: g for g in lines(out)}
    assert set(got) == {ids[0], ids[2], ids[5]} and all(g["label"] == GOOD for g in got.values())
    assert got[ids[5]]["scores"]["circle"] == {"A": None, "G": None, "n": 0}     # missing, not zero
    assert got[ids[5]]["scores"]["raw"]["n"] == 1
    # 4 kinds each: ids[1] 500 on both attempts, ids[3] garbage (not retried), ids[4] times out twice.
    assert "missing replies by cause: bad_reply 5, http_5xx 4, timeout 4" in err
    assert "3 record(s) got no label" in err and ids[1] in err and ids[3] in err and ids[4] in err
    t429 = [r["t"] for r in server.requests if r["key"] == f"[rec:{ids[2]}]" and r["behaviour"] in ("429", "ok")]
    assert len(t429) == 5 and max(t429) - min(t429) >= 0.3                   # Retry-After honored
    assert server.count(f"[rec:{ids[1]}]") == 8 and server.count(f"[rec:{ids[3]}]") == 4

    # A rerun against a healthy endpoint asks only about the records still unlabeled.
    with FakeOpenAI(content=scripted(records)) as healthy:
        assert run(data, out, healthy.url, extra=["--limit", "6"]) == 0
        assert len(healthy.requests) == 3 * 4
    got = lines(out)
    assert sorted(g["id"] for g in got) == ids[:6] and all(g["label"] == GOOD for g in got)

    # Everything answered is cached by request: labels rebuilt from scratch cost no request at all.
    out.unlink()
    with FakeOpenAI(default="500") as down:
        assert run(data, out, down.url, extra=["--limit", "6"]) == 0
        assert len(down.requests) == 2      # only ids[5]'s garbage circle reply was never cached: 2 attempts
    assert sorted(g["id"] for g in lines(out)) == ids[:6]


def test_a_reasoner_that_always_fails_is_left_out_of_the_average(synthetic, tmp_path, api_key):
    _, data, records = synthetic
    out = tmp_path / "labels.jsonl"
    with FakeOpenAI(content=scripted(records)) as good, FakeOpenAI(default="400") as bad:
        assert run(data, out, good.url, bad.url, extra=["--limit", "2"]) == 0
    got = lines(out)
    assert len(got) == 2 and all(g["label"] == GOOD for g in got)
    assert all(s["n"] == 1 for g in got for s in g["scores"].values())
    assert all(g["reasoners"] == [got[0]["reasoners"][0]] for g in got)      # only the one that replied
