"""Throughput of the HTTP judge (samples/s) against a local server that emulates endpoint latency.

    .venv/bin/python benchmarks/bench_judge.py [--latency-ms 50] [--concurrency 1 8 32]

The server (its own process) on 127.0.0.1 sleeps `latency-ms` per request, then returns a valid chat-completions
reply; every sample has a distinct prompt and there is no cache, so each sample is one HTTP call.
The ideal is concurrency / latency samples/s; the gap is this client's and the server's overhead.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visd_core.config import Judge as JudgeConfig                     # noqa: E402
from visd_core.judge import HTTPJudge, JudgeRequest                    # noqa: E402
from visd_core.rewards.diagnosis import Diagnosis                      # noqa: E402

REPLY = json.dumps({"choices": [{"message": {"role": "assistant", "content": json.dumps(
    {"feedback": "The final answer is wrong: the window is too early."})}}]}).encode()


def serve(latency_s: float, port_q) -> None:
    """Serve forever in its own process, so the server does not share this client's GIL."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True       # headers and body are two writes: no 40 ms delayed-ACK stall

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency_s)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(REPLY)))
            self.end_headers()
            self.wfile.write(REPLY)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128           # the default 5 resets connections when 32 workers connect at once

    server = Server(("127.0.0.1", 0), Handler)
    port_q.put(server.server_address[1])
    server.serve_forever()


def requests(n: int, tag: int) -> list[JudgeRequest]:
    out = "<think>The red circle moves at <t>2.0</t>s.</think><answer>From <t>1.0</t>s to <t>2.5</t>s</answer>"
    return [JudgeRequest(task="temporal_qa", question=f"When does the red circle move? (sample {tag}-{i})",
                         answer="", output=out, window=(3.2, 5.0),
                         key_frames=[(3.6, {"red circle": [[0.1, 0.2, 0.3, 0.4]]})], frame_size=(448, 336),
                         diagnosis=Diagnosis(task="temporal_qa", has_answer=True, truncated=False, format_ok=True))
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--calls-per-worker", type=int, default=20)
    args = ap.parse_args()
    os.environ["VISD_BENCH_KEY"] = "sk-bench"              # exercise the Authorization header
    port_q = mp.Queue()
    server = mp.Process(target=serve, args=(args.latency_ms / 1000, port_q), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port_q.get(timeout=30)}/v1"
    print(f"local server, {args.latency_ms:g} ms per request; samples/s (ideal = concurrency / latency)")
    cols = ("concurrency", "samples", "seconds", "samples/s", "ideal", "p50 ms", "p99 ms")
    print(" ".join(f"{c:>{w}}" for c, w in zip(cols, (11, 8, 8, 10, 7, 7, 7))))
    for c in args.concurrency:
        cfg = JudgeConfig(kind="http", base_url=url, model="bench", api_key_env="VISD_BENCH_KEY",
                          timeout_s=10.0, deadline_s=600.0, max_retries=0, concurrency=c)
        with HTTPJudge(cfg) as judge:
            judge.judge(requests(c, -1))                         # warm up: threads and connections
            reqs = requests(c * args.calls_per_worker, c)
            t0 = time.perf_counter()
            batch = judge.judge(reqs)
            dt = time.perf_counter() - t0
        m = batch.metrics
        assert m["judge/http_ok"] == len(reqs), m
        print(f"{c:>11} {len(reqs):>8} {dt:>8.2f} {len(reqs) / dt:>10.1f} {c / (args.latency_ms / 1000):>7.0f} "
              f"{1000 * m['judge/latency_p50_s']:>7.1f} {1000 * m['judge/latency_p99_s']:>7.1f}")
    server.terminate()


if __name__ == "__main__":
    main()
