"""HTTP judge: an OpenAI-compatible chat-completions endpoint, bounded in time, robust to every fault.

One `judge()` call per training step: cache lookups, then one call per distinct prompt on a pool
of `concurrency` threads, each keeping its own HTTP/1.1 connection alive across calls. Each call
has a per-call timeout and the batch an overall deadline; timeouts, connection errors, 429
(honoring Retry-After) and 5xx are retried with exponential backoff and jitter, other statuses
and unusable replies are not. A sample without feedback when its attempts are exhausted, or when
the deadline passes, gets the rule judge's feedback instead, and is counted by cause in the
batch metrics. Nothing here raises on a judge fault.

The API key is read from the environment variable named by `judge.api_key_env`, sent only in the
Authorization header, and scrubbed from anything logged.
"""
from __future__ import annotations

import http.client
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from visd_core.config import Judge as JudgeConfig
from visd_core.judge.base import Judge, JudgeBatch, JudgeRequest
from visd_core.judge.cache import FeedbackCache, cache_key
from visd_core.judge.prompts import build_prompts
from visd_core.judge.rule import RuleJudge
from visd_core.judge.wire import BadReply, EmptyContent, parse_reply, request_body

log = logging.getLogger(__name__)

# Why a sample fell back to the rule judge (metrics `judge/fallback_<cause>`). http_4xx also
# covers any other status that is neither 2xx, 429 nor 5xx; empty_content is a 200 whose message
# is empty (a reasoning model out of token budget); error is a bug in this client.
CAUSES = ("timeout", "connection", "http_429", "http_5xx", "http_4xx", "bad_reply", "empty_content",
          "deadline", "error")
MAX_BODY_BYTES = 4 << 20     # a chat reply of 1,000 characters of feedback is far below this


class _Retryable(Exception):
    def __init__(self, cause: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.cause, self.retry_after = cause, retry_after


class _Fatal(Exception):
    def __init__(self, cause: str, detail: str):
        super().__init__(detail)
        self.cause = cause


@dataclass
class _Call:
    """One distinct prompt in flight; written by its worker, read by the batch."""
    key: str
    body: bytes
    feedback: str | None = None
    cause: str | None = None
    detail: str = ""
    attempts: int = 0
    retries: int = 0
    latency_s: float | None = None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0.0 for no values)."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


class HTTPJudge(Judge):
    def __init__(self, cfg: JudgeConfig, cache: FeedbackCache | None = None, fallback: Judge | None = None,
                 *, backoff_s: float = 0.5, backoff_max_s: float = 8.0, seed: int = 0):
        url = urlsplit(cfg.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"judge.base_url must be an http(s) URL, got {cfg.base_url!r}")
        self.cfg = cfg
        self.cache = cache
        self.fallback = fallback or RuleJudge()
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self._conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self._host, self._port = url.hostname, url.port
        self._path = url.path.rstrip("/") + "/chat/completions"
        self._secret = os.environ.get(cfg.api_key_env, "")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._secret:
            self._headers["Authorization"] = f"Bearer {self._secret}"
        else:
            log.warning("judge: environment variable %s is not set; calling %s without an API key",
                        cfg.api_key_env, cfg.base_url)
        self._rng = random.Random(seed)          # backoff jitter
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="judge")
        self._local = threading.local()          # one kept-alive connection per worker thread
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()

    # ------------------------------------------------------------------------ batch
    def judge(self, requests: list[JudgeRequest]) -> JudgeBatch:
        t0 = time.monotonic()
        deadline = t0 + self.cfg.deadline_s
        n = len(requests)
        feedback: list[str | None] = [None] * n
        source: list[str | None] = [None] * n
        calls: dict[str, _Call] = {}
        owners: dict[str, list[int]] = {}        # identical prompts (e.g. equal rollouts) share one call
        futures = {}
        stop = threading.Event()                 # set at the deadline: workers stop retrying
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
            calls[key] = c = _Call(key, request_body(self.cfg.model, system, user, self.cfg.temperature,
                                                     self.cfg.max_tokens, self.cfg.max_tokens_field,
                                                     self.cfg.reasoning_effort))
            owners[key] = [i]
            futures[self._pool.submit(self._run, c, deadline, stop)] = c     # start while building the rest
        done, _ = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        stop.set()

        causes = dict.fromkeys(CAUSES, 0)
        details: dict[str, str] = {}
        for fut, c in futures.items():
            if fut in done and c.feedback is not None:
                for i in owners[c.key]:
                    feedback[i], source[i] = c.feedback, "http"
                continue
            fut.cancel()                         # not started yet: never will be
            cause, detail = (c.cause or "error", c.detail) if fut in done else \
                ("deadline", f"deadline of {self.cfg.deadline_s:g}s passed")
            causes[cause] += len(owners[c.key])
            details.setdefault(cause, detail)

        todo = [i for i in range(n) if feedback[i] is None]
        if todo:
            rule = self.fallback.judge([requests[i] for i in todo])
            for i, fb in zip(todo, rule.feedback):
                feedback[i], source[i] = fb, "rule"
            log.warning("judge: %d/%d samples fell back to the rule judge (%s)", len(todo), n,
                        "; ".join(f"{k} x{v}: {self._scrub(details[k])}" for k, v in causes.items() if v))

        latencies = [c.latency_s for f, c in futures.items() if f in done and c.latency_s is not None]
        metrics = {
            "judge/samples": n,
            "judge/http_ok": source.count("http"),
            "judge/cache_hit": source.count("cache"),
            "judge/fallback": len(todo),
            "judge/rule": len(todo),
            "judge/calls": sum(c.attempts for c in calls.values()),
            "judge/retries": sum(c.retries for c in calls.values()),
            "judge/latency_p50_s": _percentile(latencies, 50),
            "judge/latency_p90_s": _percentile(latencies, 90),
            "judge/latency_p99_s": _percentile(latencies, 99),
            "judge/time_s": time.monotonic() - t0,
            **{f"judge/fallback_{k}": v for k, v in causes.items()},
        }
        return JudgeBatch(feedback=feedback, source=source, metrics=metrics)

    # ------------------------------------------------------------------------ one prompt
    def _run(self, c: _Call, deadline: float, stop: threading.Event) -> _Call:
        start = time.monotonic()
        for attempt in range(self.cfg.max_retries + 1):
            remaining = deadline - time.monotonic()
            if stop.is_set() or remaining <= 0:
                c.cause = "deadline"
                c.detail = f"deadline of {self.cfg.deadline_s:g}s passed after {c.attempts} attempts"
                break
            c.attempts += 1
            try:
                c.feedback = self._call(c.body, min(self.cfg.timeout_s, remaining))
                if self.cache is not None:       # also when late: a resumed run will not pay again
                    self.cache.put(c.key, c.feedback)
                break
            except _Fatal as e:
                c.cause, c.detail = e.cause, str(e)
                break
            except _Retryable as e:
                c.cause, c.detail = e.cause, str(e)
                if attempt == self.cfg.max_retries:
                    break
                delay = e.retry_after if e.retry_after is not None else self._backoff(attempt)
                if time.monotonic() + delay >= deadline:
                    c.detail += f" (next attempt in {delay:.1f}s would pass the deadline)"
                    break
                if stop.wait(delay):             # the batch gave up on us while we waited
                    break
                c.retries += 1
            except Exception as e:               # a bug here must not stop training: count it, log it
                log.exception("judge: unexpected error in the HTTP client")
                c.cause, c.detail = "error", f"{type(e).__name__}: {e}"
                break
        c.latency_s = time.monotonic() - start
        return c

    def _backoff(self, attempt: int) -> float:
        # Exponential with jitter in [1/2, 1] of the step, so synchronized failures spread out.
        return min(self.backoff_max_s, self.backoff_s * 2 ** attempt) * (0.5 + 0.5 * self._rng.random())

    # ------------------------------------------------------------------------ one HTTP exchange
    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._conn_cls(self._host, self._port, timeout=timeout)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        conn.timeout = timeout                   # for the next connect
        if conn.sock is not None:
            conn.sock.settimeout(timeout)        # for every send/recv of a kept-alive socket
        return conn

    def _call(self, body: bytes, timeout: float) -> str:
        t_end = time.monotonic() + timeout
        conn = self._connection(timeout)
        try:
            try:
                reused = conn.sock is not None
                conn.request("POST", self._path, body, self._headers)
                resp = conn.getresponse()
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                # RemoteDisconnected included: a kept-alive connection the server had closed
                # while idle. Reconnecting once is part of this attempt, not a retry.
                if not reused:
                    raise
                conn.close()
                conn.request("POST", self._path, body, self._headers)
                resp = conn.getresponse()
            data = self._read(resp, t_end)
        except _Fatal:
            conn.close()                         # the rest of the body is still on the socket
            raise
        except TimeoutError:
            conn.close()
            raise _Retryable("timeout", f"no complete reply within {timeout:.2f}s") from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise _Retryable("connection", f"{type(e).__name__}: {e}") from None
        status = resp.status
        if status == 200:
            try:
                return parse_reply(data)
            except EmptyContent as e:
                # Not retried: the same prompt under the same token budget runs out the same way
                # (the fix is judge.max_tokens / judge.reasoning_effort), and a retry doubles the cost.
                raise _Fatal("empty_content", str(e)) from None
            except BadReply as e:
                raise _Fatal("bad_reply", str(e)) from None
        excerpt = " ".join(data[:200].decode("utf-8", "replace").split())
        if status == 429:
            raise _Retryable("http_429", f"HTTP 429: {excerpt}", _retry_after(resp.getheader("Retry-After")))
        if status >= 500:
            raise _Retryable("http_5xx", f"HTTP {status}: {excerpt}")
        raise _Fatal("http_4xx", f"HTTP {status}: {excerpt}")

    @staticmethod
    def _read(resp: http.client.HTTPResponse, t_end: float) -> bytes:
        # The socket timeout bounds each recv; this bounds the whole body against a trickling server.
        chunks, size = [], 0
        while chunk := resp.read(65536):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _Fatal("bad_reply", f"response body larger than {MAX_BODY_BYTES} bytes")
            if time.monotonic() > t_end:
                raise TimeoutError
            chunks.append(chunk)
        data = b"".join(chunks)
        if resp.length:      # read(amt) returns short at EOF instead of raising: check Content-Length
            raise http.client.IncompleteRead(data, resp.length)
        return data

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
