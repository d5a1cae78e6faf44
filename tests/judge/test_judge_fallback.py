"""A judge that stops judging is counted by cause and made loud (issue 13.1): empty replies of a
reasoning model out of token budget, the reasoning_effort knob, and the FallbackMonitor."""
import pytest

from fake_openai import FakeOpenAI
from judge_cases import http_cfg, marked_case, request
from visd_core.config import load_config
from visd_core.judge import FallbackMonitor, HTTPJudge, rule_feedback

KEY_ENV = "VISD_TEST_JUDGE_KEY"
VISD_7B = "configs/visd_qwen25vl_7b.toml"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")


def _cfg(url: str, **kw):
    return http_cfg(url, KEY_ENV, **{**dict(timeout_s=2.0, concurrency=4), **kw})


def _case(case: str):
    return marked_case(case)


def test_empty_content_is_its_own_cause_and_is_not_retried():
    script = {"[case:empty]": ["empty", "ok"], "[case:null]": ["null", "ok"],
              "[case:nofeedback]": ["nofeedback"], "[case:good]": ["ok"]}
    reqs = [_case(c) for c in script]
    with FakeOpenAI(script) as server:
        with HTTPJudge(_cfg(server.url), backoff_s=0.01) as judge:
            batch = judge.judge(reqs)
    assert batch.source == ["rule", "rule", "rule", "http"]
    assert batch.feedback[:3] == [rule_feedback(r) for r in reqs[:3]]
    m = batch.metrics
    assert {k: v for k, v in m.items() if k.startswith("judge/fallback_") and v} == {
        "judge/fallback_empty_content": 2, "judge/fallback_bad_reply": 1}
    # A budget problem repeats on retry: one request each, although the script would answer next time.
    assert server.count("[case:empty]") == server.count("[case:null]") == 1 and m["judge/retries"] == 0


def test_reasoning_effort_is_sent_only_when_set():
    with FakeOpenAI() as server:
        with HTTPJudge(_cfg(server.url, max_tokens=2048, max_tokens_field="max_completion_tokens",
                            reasoning_effort="low")) as judge:
            judge.judge([_case("[case:set]")])
        with HTTPJudge(_cfg(server.url)) as judge:
            judge.judge([_case("[case:unset]")])
    set_, unset = (r["body"] for r in server.requests)
    assert set_["reasoning_effort"] == "low" and set_["max_completion_tokens"] == 2048
    assert "reasoning_effort" not in unset and unset["max_tokens"] == 256


def test_config_knobs_are_validated():
    cfg = load_config(None, ["--judge.reasoning_effort=minimal", "--judge.max_fallback_frac=0.2",
                             "--judge.on_fallback=abort"]).judge
    assert (cfg.reasoning_effort, cfg.max_fallback_frac, cfg.on_fallback) == ("minimal", 0.2, "abort")
    for arg, match in [("--judge.reasoning_effort=extreme", "is not one of '', 'none', 'minimal'"),
                       ("--judge.max_fallback_frac=1.5", r"must be a fraction in \[0, 1\]"),
                       ("--judge.on_fallback=panic", "is not one of 'warn', 'abort'")]:
        with pytest.raises(ValueError, match=match) as e:
            load_config(None, [arg])
        assert "\n" not in str(e.value)


def test_7b_recipe_leaves_the_reasoning_judge_room_to_reply():
    judge = load_config(VISD_7B).judge
    assert judge.max_tokens_field == "max_completion_tokens" and judge.reasoning_effort == "low"
    assert judge.max_tokens >= 1024


def test_monitor_warns_once_when_an_empty_replying_judge_falls_back():
    monitor = FallbackMonitor(_cfg("http://127.0.0.1:1/v1"), window_steps=3)
    messages = []
    with FakeOpenAI(default="empty") as server:
        with HTTPJudge(_cfg(server.url)) as judge:
            for step in range(4):
                batch = judge.judge([_case(f"[case:s{step}i{i}]") for i in range(3)])
                messages.append(monitor.observe(step, batch.metrics))
    assert messages[0] is not None and messages[1:] == [None, None, None]      # once per crossing
    msg = messages[0]
    assert "\n" not in msg and "3/3 samples (100%)" in msg
    assert "empty_content x3" in msg and "judge.max_tokens" in msg and "judge.max_fallback_frac = 0.5" in msg


def test_monitor_aborts_on_an_empty_replying_judge():
    monitor = FallbackMonitor(_cfg("http://127.0.0.1:1/v1", on_fallback="abort"))
    with FakeOpenAI(script={"[case:ok]": ["ok"]}, default="empty") as server:
        with HTTPJudge(_cfg(server.url)) as judge:
            batch = judge.judge([_case("[case:ok]"), _case("[case:bad]")])
            assert monitor.observe(0, batch.metrics) is None                  # 1/2 is not above 0.5
            batch = judge.judge([_case("[case:bad2]"), _case("[case:bad3]")])
            with pytest.raises(RuntimeError, match=r"3/4 samples .*empty_content x3.*on_fallback = \"abort\""):
                monitor.observe(1, batch.metrics)


def _metrics(samples: int, fallback: int, cause: str = "timeout") -> dict:
    return {"judge/samples": samples, "judge/fallback": fallback, f"judge/fallback_{cause}": fallback}


def test_monitor_window_rearms_and_ignores_steps_without_an_llm_judge():
    monitor = FallbackMonitor(_cfg("http://127.0.0.1:1/v1", max_fallback_frac=0.25), window_steps=2)
    assert monitor.observe(0, {}) is None                                      # λ = 0: no judge call
    assert monitor.observe(1, {"judge/samples": 8, "judge/rule": 8}) is None   # the rule judge by choice
    assert monitor.observe(2, _metrics(8, 0)) is None
    assert monitor.observe(3, _metrics(8, 4)) is None                          # 4/16 is not above 0.25
    msg = monitor.observe(4, _metrics(8, 4))                                   # 8/16 is
    assert "8/16 samples (50%) of the last 2 judged steps (to step 4)" in msg and "timeout x8" in msg
    assert "judge.timeout_s" in msg
    assert monitor.observe(5, _metrics(8, 4)) is None                          # still above: already said
    assert monitor.observe(6, _metrics(8, 0)) is None                          # back to 4/16: re-armed
    msg = monitor.observe(7, _metrics(8, 8, "deadline"))
    assert msg is not None and "deadline x8" in msg and "judge.deadline_s" in msg
