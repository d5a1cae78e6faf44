"""HTTPJudge against a real HTTP server on 127.0.0.1 with scripted faults (issue 6 acceptance)."""
import json
import logging
import socket
import time

import pytest

from fake_openai import FakeOpenAI
from judge_cases import SAMPLES, http_cfg, marked_case, request
from visd_core.judge import FeedbackCache, HTTPJudge, build_judge, rule_feedback

SECRET = "sk-test-9f8e7d6c5b4a3210"
KEY_ENV = "VISD_TEST_JUDGE_KEY"


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def _cfg(url: str, **kw):
    return http_cfg(url, KEY_ENV, **kw)


def _case(case: str):
    return marked_case(case)


SCRIPT = {
    "[case:good]": ["ok"], "[case:fenced]": ["fenced"], "[case:slow]": ["slow"],
    "[case:500]": ["500", "ok"], "[case:429]": ["429", "ok"], "[case:nonjson]": ["nonjson"],
    "[case:nofeedback]": ["nofeedback"], "[case:close]": ["close", "ok"], "[case:400]": ["400"],
}


def test_mixed_faults_every_sample_gets_feedback_with_exact_counts(api_key, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    reqs = [_case(c) for c in SCRIPT]
    with FakeOpenAI(SCRIPT, slow_s=1.2, retry_after="0.5") as server:
        cfg = _cfg(server.url, cache_dir=str(tmp_path / "cache"))
        with build_judge(cfg, tmp_path) as judge:
            judge.backoff_s = 0.02
            t0 = time.monotonic()
            batch = judge.judge(reqs)
            elapsed = time.monotonic() - t0

    served = {"[case:good]", "[case:fenced]", "[case:500]", "[case:429]", "[case:close]"}
    for case, req, fb, src in zip(SCRIPT, reqs, batch.feedback, batch.source):
        if case in served:
            assert (fb, src) == (f"ok {case}", "http"), case
        else:
            assert (fb, src) == (rule_feedback(req), "rule"), case
    m = batch.metrics
    assert (m["judge/http_ok"], m["judge/fallback"], m["judge/cache_hit"]) == (5, 4, 0)
    assert {k: v for k, v in m.items() if k.startswith("judge/fallback_") and v} == {
        "judge/fallback_timeout": 1, "judge/fallback_bad_reply": 2, "judge/fallback_http_4xx": 1}
    assert m["judge/retries"] == 2 + 1 + 1 + 1           # slow twice; 500, 429, close once each
    assert m["judge/calls"] == len(server.requests) == 14
    assert server.count("[case:400]") == server.count("[case:nonjson]") == server.count("[case:nofeedback]") == 1
    t429 = [r["t"] for r in server.requests if r["key"] == "[case:429]"]
    assert t429[1] - t429[0] >= 0.5                       # Retry-After honored
    assert elapsed < cfg.deadline_s and m["judge/time_s"] < cfg.deadline_s
    assert 0 < m["judge/latency_p50_s"] <= m["judge/latency_p90_s"] <= m["judge/latency_p99_s"]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 5      # only real feedback is cached

    # The key went out in the header, and nowhere else.
    assert all(r["headers"]["Authorization"] == f"Bearer {SECRET}" for r in server.requests)
    (tmp_path / "metrics.jsonl").write_text(json.dumps(m) + "\n")
    (tmp_path / "feedback.jsonl").write_text("".join(json.dumps({"feedback": f}) + "\n" for f in batch.feedback))
    out = capsys.readouterr()
    assert "fell back to the rule judge" in caplog.text
    assert SECRET not in caplog.text + out.out + out.err
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f


def test_deadline_bounds_a_batch_of_slow_calls(api_key):
    reqs = [_case(f"[case:slow{i}]") for i in range(6)]
    with FakeOpenAI(default="slow", slow_s=2.0) as server:
        cfg = _cfg(server.url, timeout_s=1.0, deadline_s=0.6, max_retries=5, concurrency=2)
        with HTTPJudge(cfg) as judge:
            t0 = time.monotonic()
            batch = judge.judge(reqs)
            elapsed = time.monotonic() - t0
    assert elapsed < 0.6 + 0.3
    assert batch.source == ["rule"] * 6
    assert batch.feedback == [rule_feedback(r) for r in reqs]
    m = batch.metrics
    assert m["judge/fallback"] == 6
    assert m["judge/fallback_deadline"] + m["judge/fallback_timeout"] == 6
    assert m["judge/fallback_deadline"] >= 4                # 2 workers: 4 samples never started


def test_retry_after_beyond_the_deadline_gives_up_at_once(api_key):
    with FakeOpenAI({"[case:429]": ["429"]}, retry_after="30") as server:
        with HTTPJudge(_cfg(server.url, deadline_s=3.0, max_retries=3)) as judge:
            t0 = time.monotonic()
            batch = judge.judge([_case("[case:429]")])
            assert time.monotonic() - t0 < 1.0
    m = batch.metrics
    assert (m["judge/fallback_http_429"], m["judge/retries"], m["judge/calls"]) == (1, 0, 1)


def test_unreachable_endpoint_retries_then_falls_back(api_key):
    with socket.socket() as s:                             # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with HTTPJudge(_cfg(f"http://127.0.0.1:{port}/v1", max_retries=2), backoff_s=0.01) as judge:
        batch = judge.judge([_case("[case:x]")])
    m = batch.metrics
    assert (m["judge/fallback_connection"], m["judge/retries"], m["judge/calls"]) == (1, 2, 3)


def test_second_run_over_the_same_batch_makes_no_request(api_key, tmp_path):
    reqs = list(SAMPLES.values())
    with FakeOpenAI() as server:
        with HTTPJudge(_cfg(server.url), cache=FeedbackCache(tmp_path, 1 << 20)) as judge:
            first = judge.judge(reqs)
        assert first.source == ["http"] * len(reqs) and len(server.requests) == len(reqs)
        # A resumed run: a new judge and a new cache object over the same folder.
        with HTTPJudge(_cfg(server.url), cache=FeedbackCache(tmp_path, 1 << 20)) as judge:
            second = judge.judge(reqs)
        assert len(server.requests) == len(reqs)           # zero new requests
    assert second.source == ["cache"] * len(reqs)
    assert second.feedback == first.feedback
    assert (second.metrics["judge/calls"], second.metrics["judge/cache_hit"]) == (0, len(reqs))


def test_identical_prompts_share_one_call(api_key):
    reqs = [_case("[case:same]") for _ in range(5)]
    with FakeOpenAI() as server:
        with HTTPJudge(_cfg(server.url)) as judge:
            batch = judge.judge(reqs)
    assert len(server.requests) == 1
    assert batch.feedback == ["ok"] * 5          # "ok <no script key>", whitespace-collapsed
    assert batch.metrics["judge/http_ok"] == 5


def test_connection_closed_while_idle_is_reopened_without_a_retry(api_key):
    with FakeOpenAI({"[case:first]": ["idle_close"], "[case:second]": ["ok"]}) as server:
        with HTTPJudge(_cfg(server.url, concurrency=1)) as judge:       # one worker: one kept-alive socket
            assert judge.judge([_case("[case:first]")]).source == ["http"]
            time.sleep(0.1)                                             # the server has closed it by now
            batch = judge.judge([_case("[case:second]")])
    assert batch.feedback == ["ok [case:second]"]
    assert (batch.metrics["judge/calls"], batch.metrics["judge/retries"]) == (1, 0)
    assert server.count() == 2


def test_missing_api_key_warns_and_sends_no_authorization(monkeypatch, caplog):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeOpenAI() as server:
        with caplog.at_level(logging.WARNING):
            judge = HTTPJudge(_cfg(server.url))
        with judge:
            batch = judge.judge([_case("[case:k]")])
    assert f"environment variable {KEY_ENV} is not set" in caplog.text
    assert "Authorization" not in server.requests[0]["headers"]
    assert batch.source == ["http"]


def test_bad_base_url_is_a_clear_error():
    with pytest.raises(ValueError, match="judge.base_url must be an http"):
        HTTPJudge(_cfg("ftp://example.org/v1"))
