"""Benchmark metrics: V-STAR (vstar.py), Charades-STA (charades.py), multiple choice (mcq.py); the
evaluation runner (runner.py: generate, verify, summarize) with its data readers (formats.py) and
summary (summary.py); and the command line for both (`python -m visd_core.eval --help`)."""
