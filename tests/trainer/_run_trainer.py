"""torchrun worker: train with a config + overrides, then record a checksum of the full parameters per rank."""
import hashlib
import json
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


cfg = load_config(sys.argv[1], sys.argv[2:])
trainer = Trainer(cfg)
before = checksum(trainer.model)
trainer.train()
after = checksum(trainer.model)
(cfg.dump_folder / f"rank{trainer.d.rank}.json").write_text(json.dumps({"before": before, "after": after}))
trainer.close()
