"""Modes the trainer does not implement are errors, never silently ignored."""
import pytest

from visd_core.config import load_config
from visd_core.trainer import Trainer


@pytest.mark.parametrize("override, needle", [
    ("--algorithm.kl_beta=0.04", "has no reference policy"),
    ("--algorithm.name=visioncoach --visioncoach.selector=model", "selector_path"),
    ("--algorithm.updates_per_batch=2", "updates_per_batch"),
    ("--training.grad_accum=2", "SFT stage only"),
])
def test_unimplemented_modes_raise(override, needle, tmp_path):
    with pytest.raises(ValueError, match=needle):
        Trainer(load_config("configs/tiny_synthetic.toml", override.split() + [f"--job.dump_folder={tmp_path}"]))
