"""A scripted OpenAI chat-completions server on 127.0.0.1 for the judge tests.

Each request is routed by the first script key found in its user message (the tests put a
marker such as "[case:slow]" in the question); the n-th request for a key gets the n-th
behaviour of its list (the last one repeats). Behaviours:
  ok          200, a valid reply {"feedback": "ok <key>"}
  fenced      200, the same JSON inside a ```json fenced block
  slow        sleeps `slow_s`, then as ok
  500         500 with a text body
  429         429 with `Retry-After: <retry_after>`
  400         400 with an OpenAI-style error body
  nonjson     200 with an HTML body
  nofeedback  200, valid JSON without the "feedback" key
  empty       200, content "" with finish_reason "length" (a reasoning model out of token budget)
  null        200, content null with finish_reason "length"
  close       200 headers promising a body, a part of it, then the connection is closed
  idle_close  as ok, then the connection is closed without notice (a server's keep-alive timeout)
Every request is recorded (arrival time, headers, decoded body). A user message made of parts
(text and image_url, as the VP-Selector's proxy reasoners send) is routed by its text parts, and
`content(key, body)`, when given, writes the assistant message of the ok-like replies instead of
{"feedback": "ok <key>"}.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content: str | None, finish_reason: str = "stop") -> bytes:
    return json.dumps({"id": "cmpl-test", "object": "chat.completion", "model": "judge-test",
                       "choices": [{"index": 0, "finish_reason": finish_reason,
                                    "message": {"role": "assistant", "content": content}}]}).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64        # the default 5 resets connections when many workers connect at once

    def handle_error(self, request, client_address):
        pass        # a client that timed out and left makes the handler's write fail: expected


class FakeOpenAI:
    def __init__(self, script: dict[str, list[str]] | None = None, default: str = "ok",
                 slow_s: float = 1.0, retry_after: str = "0.5", delay_s: float = 0.0, content=None):
        self.script, self.default, self.content = script or {}, default, content
        self.slow_s, self.retry_after, self.delay_s = slow_s, retry_after, delay_s
        self.requests: list[dict] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def count(self, key: str | None = None) -> int:
        return sum(1 for r in self.requests if key is None or r["key"] == key)

    def _next(self, user: str | list) -> tuple[str, str]:
        if isinstance(user, list):
            user = "\n".join(p.get("text", "") for p in user if isinstance(p, dict))
        key = next((k for k in self.script if k in user), "")
        with self._lock:
            n = self._seen.get(key, 0)
            self._seen[key] = n + 1
        plan = self.script.get(key, [self.default])
        return key, plan[min(n, len(plan) - 1)]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"      # keep-alive, as real endpoints
            disable_nagle_algorithm = True       # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key, what = fake._next(body["messages"][1]["content"])
                with fake._lock:
                    fake.requests.append({"t": time.monotonic(), "path": self.path, "key": key,
                                          "behaviour": what, "headers": dict(self.headers), "body": body})
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                good = completion(fake.content(key, body) if fake.content else json.dumps({"feedback": f"ok {key}"}))
                if what == "ok":
                    self._send(200, good)
                elif what == "idle_close":
                    self._send(200, good)
                    self.close_connection = True
                elif what == "fenced":
                    self._send(200, completion(f'```json\n{json.dumps({"feedback": f"ok {key}"})}\n```'))
                elif what == "slow":
                    time.sleep(fake.slow_s)
                    self._send(200, good)
                elif what == "500":
                    self._send(500, b"internal server error")
                elif what == "429":
                    self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": fake.retry_after})
                elif what == "400":
                    self._send(400, b'{"error": {"message": "Unsupported parameter: max_tokens"}}')
                elif what == "nonjson":
                    self._send(200, b"<html><body>502 Bad Gateway</body></html>")
                elif what == "nofeedback":
                    self._send(200, completion('{"verdict": "wrong"}'))
                elif what == "empty":
                    self._send(200, completion("", "length"))
                elif what == "null":
                    self._send(200, completion(None, "length"))
                elif what == "close":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(good)))
                    self.end_headers()
                    self.wfile.write(good[:20])
                    self.wfile.flush()
                    self.close_connection = True
                else:
                    raise AssertionError(f"unknown scripted behaviour {what!r}")

        return Handler
