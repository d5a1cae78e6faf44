"""Benchmark metrics: V-STAR (vstar.py), Charades-STA (charades.py), multiple choice (mcq.py),
and the command line that computes them from JSONL files (`python -m visd_core.eval --help`)."""
