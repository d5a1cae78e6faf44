"""visd entry point.

    torchrun --standalone --nproc_per_node=2 train.py --config configs/tiny_synthetic.toml
    python train.py --config configs/visd_qwen25vl_7b.toml --print-config
    python train.py --config C.toml --optim.lr=2e-6 --resume auto

Overrides are `--section.key=value` (TOML literals); an invalid config exits 2 with the reason.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from visd_core.config import load_config, to_toml
from visd_core.preflight import InputError, check_inputs

EXIT_GRACE_S = 3.0      # a loaded 2-core machine once killed rank 0 before it printed (tests/test_preflight.py)


def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML config file (defaults apply where it is silent)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    p.add_argument("--resume", help="shorthand for --checkpoint.resume=VALUE (none | auto | step folder)")
    args, rest = p.parse_known_args(argv)
    if args.resume is not None:
        rest.append(f"--checkpoint.resume={args.resume}")
    return args, rest


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(args.config, overrides)
    except ValueError as e:
        print(f"train.py: config error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(to_toml(cfg), end="")
        return 0
    rank0 = int(os.environ.get("RANK", "0")) == 0
    try:
        check_inputs(cfg)           # before any process group: one line per missing input, rank 0 only
    except InputError as e:
        if rank0:
            print(f"train.py: {e}".replace("\n", "\ntrain.py: "), file=sys.stderr)
        else:   # torchrun stops every worker once one fails: let rank 0 say why before this one exits
            time.sleep(EXIT_GRACE_S)
        return 2
    logging.basicConfig(level=logging.INFO if rank0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from visd_core.parallel import destroy_distributed    # after config errors: --print-config stays light
    from visd_core.trainer import Trainer

    try:
        trainer = Trainer(cfg)
    except ValueError as e:     # bad input met while building: an incomplete checkpoint, no valid records, ...
        if rank0:
            print(f"train.py: {e}", file=sys.stderr)
        else:
            time.sleep(EXIT_GRACE_S)
        destroy_distributed()
        return 2
    try:
        trainer.train()
    except BaseException:
        # A failing rank exits at once: waiting in close()'s barrier for ranks still inside a
        # collective would hang them all until the process-group timeout; torchrun stops the rest.
        trainer.close(barrier=False)
        raise
    trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
