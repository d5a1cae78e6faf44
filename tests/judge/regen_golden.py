"""Rewrite tests/judge/golden/*.txt: the exact request bodies the HTTP judge sends for the
samples of judge_cases.SAMPLES, captured by a loopback server.

    .venv/bin/python tests/judge/regen_golden.py

Run it after an intended prompt change and review the diff. The tests only read these files
(test_judge_prompts.py); what they must say is checked there against visd Appendix G itself.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]       # fake_openai, judge_cases; visd_core

from fake_openai import FakeOpenAI                       # noqa: E402
from judge_cases import SAMPLES                          # noqa: E402
from visd_core.config import Judge as JudgeConfig        # noqa: E402
from visd_core.judge import HTTPJudge                    # noqa: E402

GOLDEN = HERE / "golden"
KEY_ENV = "VISD_TEST_JUDGE_KEY"                          # the caller sets it (an Authorization header is sent)


def render(body: dict) -> str:
    """A request body as a golden file: the parameters as sorted JSON, then each message."""
    params = {k: v for k, v in body.items() if k != "messages"}
    parts = [json.dumps(params, sort_keys=True)]
    for m in body["messages"]:
        parts += [f"=== {m['role']} ===", m["content"]]
    return "\n".join(parts)


def sent_requests() -> dict[str, dict]:
    """Sample name -> the request the judge sent for it ({"path", "headers", "body", ...})."""
    cfg = JudgeConfig(kind="http", model="judge-test", api_key_env=KEY_ENV, timeout_s=5.0,
                      deadline_s=10.0, max_retries=0, concurrency=4)
    with FakeOpenAI() as server:
        cfg.base_url = server.url
        with HTTPJudge(cfg) as judge:
            batch = judge.judge(list(SAMPLES.values()))
    if batch.source != ["http"] * len(SAMPLES) or len(server.requests) != len(SAMPLES):
        raise RuntimeError(f"expected one served request per sample, got {batch.source}")
    out = {}
    for name, req in SAMPLES.items():
        marker = f"- Student full output: {req.output}\n"
        [out[name]] = [r for r in server.requests if marker in r["body"]["messages"][1]["content"]]
    return out


def main() -> None:
    os.environ.setdefault(KEY_ENV, "sk-golden")
    GOLDEN.mkdir(exist_ok=True)
    for name, sent in sent_requests().items():
        path = GOLDEN / f"{name}.txt"
        path.write_text(render(sent["body"]))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
