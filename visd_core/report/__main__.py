"""python -m visd_core.report RUN_DIR [RUN_DIR ...] [--out PATH] [--credit-steps N]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visd_core.report import write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m visd_core.report",
                                description="Write a self-contained HTML report of one or more runs (overlaid).")
    p.add_argument("runs", nargs="+", help="run folders ([job] dump_folder), e.g. runs/tiny_synthetic")
    p.add_argument("--out", help="output file (default: <first run>/report.html)")
    p.add_argument("--credit-steps", type=int, default=3,
                   help="recorded token-credit steps shown per run, spread first to last (0 = all)")
    args = p.parse_args(argv)
    missing = [r for r in args.runs if not Path(r).is_dir()]
    if missing:
        print(f"visd_core.report: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    print(write_report(args.runs, args.out, args.credit_steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
