import json

import pytest
import torch
from safetensors.torch import save_file

from visd_core.config import Model
from visd_core.data.synthetic import generate
from visd_core.model.build import build_unsharded, to_hub_names
from visd_core.model.export import hub_config


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """8 synthetic records with their videos, each question marked "[rec:<id>]" so a scripted
    server can tell them apart: (folder, marked JSONL path, {id: record JSON})."""
    out = tmp_path_factory.mktemp("selector_synthetic")
    generate(str(out), n=8, seed=0, n_val=0, workers=1, progress=False)
    recs = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    for r in recs:
        r["question"] += f" [rec:{r['id']}]"
    marked = out / "marked.jsonl"
    marked.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out, marked, {r["id"]: r for r in recs}


def save_checkpoint(model, path) -> str:
    """A local model directory as model/export.py lays it out (config.json + model.safetensors), no
    process group needed."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(hub_config(model.config, torch.float32)))
    save_file({to_hub_names(k): v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    return str(path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """The tiny [model] default, seeded, saved as a local checkpoint directory."""
    return save_checkpoint(build_unsharded(Model(), seed=3), tmp_path_factory.mktemp("ckpt") / "tiny_policy")
