"""torchrun worker: train with a config + overrides, then record a checksum of the full parameters per rank.
With VISD_TEST_SEEN_IDS=1 every record id the rank's reader yields is appended to seen_rank<R>.txt
(flushed per record: a killed rank leaves what it read)."""
import hashlib
import json
import logging
import os
import sys

import torch
from torch.distributed.tensor import DTensor

from visd_core.config import load_config
from visd_core.trainer import Trainer


def checksum(model) -> str:
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        full = p.full_tensor() if isinstance(p, DTensor) else p
        h.update(name.encode())
        h.update(full.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
                    format="%(levelname)s %(name)s: %(message)s")
cfg = load_config(sys.argv[1], sys.argv[2:])
trainer = Trainer(cfg)
if os.environ.get("VISD_TEST_SEEN_IDS"):
    seen = cfg.dump_folder / f"seen_rank{trainer.d.rank}.txt"

    class LoggedReader(type(trainer.reader)):
        def __iter__(self):
            for record in super().__iter__():
                with seen.open("a") as f:
                    f.write(record.id + "\n")
                yield record

    trainer.reader.__class__ = LoggedReader
before = checksum(trainer.model)
trainer.train()
after = checksum(trainer.model)
(cfg.dump_folder / f"rank{trainer.d.rank}.json").write_text(json.dumps({"before": before, "after": after}))
trainer.close()
