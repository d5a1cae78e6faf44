"""The HTTP transport shared by the judge and the VP-Selector's proxy reasoners.

A `ChatClient` posts OpenAI chat-completions bodies on a pool of `concurrency` threads, each
keeping its own HTTP/1.1 connection alive across calls. Each call has a per-call timeout and a
batch an overall deadline; timeouts, connection errors, 429 (honoring Retry-After) and 5xx are
retried with exponential backoff and jitter, other statuses and unusable replies are not. A call
that fails ends with one of CAUSES; nothing here raises on an endpoint fault. Subclasses say how
a 200 body becomes text (`_parse`, raising BadReply / EmptyContent).

The API key is read from the environment variable named `api_key_env`, sent only in the
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

from visd_core.judge.cache import FeedbackCache
from visd_core.judge.wire import BadReply, EmptyContent

log = logging.getLogger(__name__)

# Why a call failed (metrics `judge/fallback_<cause>`). http_4xx also covers any other status that
# is neither 2xx, 429 nor 5xx; empty_content is a 200 whose message is empty (a reasoning model out
# of token budget); error is a bug in this client.
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
class Call:
    """One distinct request in flight; written by its worker, read by the batch."""
    key: str                       # cache key
    body: bytes
    text: str | None = None        # the parsed reply when the call succeeded
    cause: str | None = None       # one of CAUSES when it did not
    detail: str = ""
    attempts: int = 0
    retries: int = 0
    latency_s: float | None = None


@dataclass
class Outcome:
    """A call as the batch saw it at its end (the worker of an abandoned call may still write to it)."""
    ended: bool                    # the call finished before the deadline
    text: str | None               # the reply, or None
    cause: str | None              # one of CAUSES when there is no reply
    detail: str


def retry_after_s(value: str | None) -> float | None:
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


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0.0 for no values)."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


class ChatClient:
    """`name` prefixes log lines and worker threads; `url_what` names the URL's setting in errors."""

    def __init__(self, base_url: str, api_key_env: str, *, timeout_s: float, deadline_s: float, max_retries: int,
                 concurrency: int, cache: FeedbackCache | None = None, name: str = "judge",
                 url_what: str = "judge.base_url", backoff_s: float = 0.5, backoff_max_s: float = 8.0, seed: int = 0):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{url_what} must be an http(s) URL, got {base_url!r}")
        self.base_url, self._log_name, self.cache = base_url, name, cache
        self.timeout_s, self.deadline_s, self.max_retries = timeout_s, deadline_s, max_retries
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self._conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self._host, self._port = url.hostname, url.port
        self._path = url.path.rstrip("/") + "/chat/completions"
        self._secret = os.environ.get(api_key_env, "")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._secret:
            self._headers["Authorization"] = f"Bearer {self._secret}"
        else:
            log.warning("%s: environment variable %s is not set; calling %s without an API key",
                        name, api_key_env, base_url)
        self._rng = random.Random(seed)          # backoff jitter
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name)
        self._local = threading.local()          # one kept-alive connection per worker thread
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()

    def _parse(self, data: bytes) -> str:
        """The text of a 200 reply body; BadReply / EmptyContent when it has none usable."""
        raise NotImplementedError

    # ------------------------------------------------------------------------ batch
    def run_calls(self, calls: list[Call], deadline: float) -> list[Outcome]:
        """Run the calls concurrently until each ends or `deadline` (time.monotonic()) passes; the
        outcome of each as of then. A call still running at the deadline is abandoned (a late
        success is still cached, the outcome says "deadline")."""
        stop = threading.Event()                 # set at the deadline: workers stop retrying
        futures = [self._pool.submit(self._run, c, deadline, stop) for c in calls]
        done, _ = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        stop.set()
        out = []
        for fut, c in zip(futures, calls):
            if fut in done:
                out.append(Outcome(True, c.text, None if c.text is not None else c.cause or "error", c.detail))
            else:
                fut.cancel()                     # not started yet: never will be
                out.append(Outcome(False, None, "deadline", f"deadline of {self.deadline_s:g}s passed"))
        return out

    # ------------------------------------------------------------------------ one request
    def _run(self, c: Call, deadline: float, stop: threading.Event) -> Call:
        start = time.monotonic()
        for attempt in range(self.max_retries + 1):
            remaining = deadline - time.monotonic()
            if stop.is_set() or remaining <= 0:
                c.cause = "deadline"
                c.detail = f"deadline of {self.deadline_s:g}s passed after {c.attempts} attempts"
                break
            c.attempts += 1
            try:
                text = self._call(c.body, min(self.timeout_s, remaining))
                if self.cache is not None:       # also when late: a resumed run will not pay again
                    self.cache.put(c.key, text)
                c.text = text
                break
            except _Fatal as e:
                c.cause, c.detail = e.cause, str(e)
                break
            except _Retryable as e:
                c.cause, c.detail = e.cause, str(e)
                if attempt == self.max_retries:
                    break
                delay = e.retry_after if e.retry_after is not None else self._backoff(attempt)
                if time.monotonic() + delay >= deadline:
                    c.detail += f" (next attempt in {delay:.1f}s would pass the deadline)"
                    break
                if stop.wait(delay):             # the batch gave up on us while we waited
                    break
                c.retries += 1
            except Exception as e:               # a bug here must not stop training: count it, log it
                log.exception("%s: unexpected error in the HTTP client", self._log_name)
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
                return self._parse(data)
            except EmptyContent as e:
                # Not retried: the same prompt under the same token budget runs out the same way
                # (the fix is a larger max_tokens / lower reasoning_effort), and a retry doubles the cost.
                raise _Fatal("empty_content", str(e)) from None
            except BadReply as e:
                raise _Fatal("bad_reply", str(e)) from None
        excerpt = " ".join(data[:200].decode("utf-8", "replace").split())
        if status == 429:
            raise _Retryable("http_429", f"HTTP 429: {excerpt}", retry_after_s(resp.getheader("Retry-After")))
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
