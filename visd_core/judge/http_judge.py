"""HTTP judge: an OpenAI-compatible chat-completions endpoint, bounded in time, robust to every fault.

One `judge()` call per training step: cache lookups, then one call per distinct prompt on a pool
of `concurrency` threads, each keeping its own HTTP/1.1 connection alive across calls. Each call
has a per-call timeout and the batch an overall deadline; timeouts, connection errors, 429
(honoring Retry-After) and 5xx are retried with exponential backoff and jitter, other statuses
and unusable replies are not (the transport, `judge/transport.py`, shared with the VP-Selector's
proxy reasoners). A sample without feedback when its attempts are exhausted, or when the
deadline passes, gets the rule judge's feedback instead, and is counted by cause in the batch
metrics. Nothing here raises on a judge fault.

The API key is read from the environment variable named by `judge.api_key_env`, sent only in the
Authorization header, and scrubbed from anything logged.
"""
from __future__ import annotations

import logging
import time

from visd_core.config import Judge as JudgeConfig
from visd_core.judge.base import Judge, JudgeBatch, JudgeRequest
from visd_core.judge.cache import FeedbackCache, cache_key
from visd_core.judge.prompts import build_prompts
from visd_core.judge.rule import RuleJudge
from visd_core.judge.transport import CAUSES, Call, ChatClient, percentile
from visd_core.judge.wire import parse_reply, request_body

log = logging.getLogger(__name__)

__all__ = ["HTTPJudge", "CAUSES"]     # CAUSES: why a sample fell back (metrics `judge/fallback_<cause>`)


class HTTPJudge(ChatClient, Judge):
    def __init__(self, cfg: JudgeConfig, cache: FeedbackCache | None = None, fallback: Judge | None = None,
                 *, backoff_s: float = 0.5, backoff_max_s: float = 8.0, seed: int = 0):
        super().__init__(cfg.base_url, cfg.api_key_env, timeout_s=cfg.timeout_s, deadline_s=cfg.deadline_s,
                         max_retries=cfg.max_retries, concurrency=cfg.concurrency, cache=cache, name="judge",
                         url_what="judge.base_url", backoff_s=backoff_s, backoff_max_s=backoff_max_s, seed=seed)
        self.cfg = cfg
        self.fallback = fallback or RuleJudge()

    def _parse(self, data: bytes) -> str:
        return parse_reply(data)

    def judge(self, requests: list[JudgeRequest]) -> JudgeBatch:
        t0 = time.monotonic()
        n = len(requests)
        feedback: list[str | None] = [None] * n
        source: list[str | None] = [None] * n
        calls: dict[str, Call] = {}
        owners: dict[str, list[int]] = {}        # identical prompts (e.g. equal rollouts) share one call
        for i, req in enumerate(requests):
            system, user = build_prompts(req)
            key = cache_key(self.cfg.model, system, user)
            if key in calls:
                owners[key].append(i)
                continue
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                feedback[i], source[i] = hit, "cache"
                continue
            calls[key] = Call(key, request_body(self.cfg.model, system, user, self.cfg.temperature,
                                                self.cfg.max_tokens, self.cfg.max_tokens_field,
                                                self.cfg.reasoning_effort))
            owners[key] = [i]
        outcomes = self.run_calls(list(calls.values()), t0 + self.cfg.deadline_s)

        causes = dict.fromkeys(CAUSES, 0)
        details: dict[str, str] = {}
        for c, o in zip(calls.values(), outcomes):
            if o.text is not None:
                for i in owners[c.key]:
                    feedback[i], source[i] = o.text, "http"
                continue
            causes[o.cause] += len(owners[c.key])
            details.setdefault(o.cause, o.detail)

        todo = [i for i in range(n) if feedback[i] is None]
        if todo:
            rule = self.fallback.judge([requests[i] for i in todo])
            for i, fb in zip(todo, rule.feedback):
                feedback[i], source[i] = fb, "rule"
            log.warning("judge: %d/%d samples fell back to the rule judge (%s)", len(todo), n,
                        "; ".join(f"{k} x{v}: {self._scrub(details[k])}" for k, v in causes.items() if v))

        latencies = [c.latency_s for c, o in zip(calls.values(), outcomes) if o.ended and c.latency_s is not None]
        metrics = {
            "judge/samples": n,
            "judge/http_ok": source.count("http"),
            "judge/cache_hit": source.count("cache"),
            "judge/fallback": len(todo),
            "judge/rule": len(todo),
            "judge/calls": sum(c.attempts for c in calls.values()),
            "judge/retries": sum(c.retries for c in calls.values()),
            "judge/latency_p50_s": percentile(latencies, 50),
            "judge/latency_p90_s": percentile(latencies, 90),
            "judge/latency_p99_s": percentile(latencies, 99),
            "judge/time_s": time.monotonic() - t0,
            **{f"judge/fallback_{k}": v for k, v in causes.items()},
        }
        return JudgeBatch(feedback=feedback, source=source, metrics=metrics)
