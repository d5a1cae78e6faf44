"""Modes the trainer does not implement are errors, never silently ignored."""
import pytest

from visd_core.config import load_config
from visd_core.trainer import Trainer


@pytest.mark.parametrize("override, needle", [
    ("--algorithm.name=gspo", "implements 'grpo' and 'visd'"),
    ("--algorithm.name=visioncoach", "implements 'grpo' and 'visd'"),
    ("--algorithm.kl_beta=0.04", "reference policy"),
    ("--algorithm.updates_per_batch=2", "updates_per_batch"),
    ("--training.grad_accum=2", "SFT stage only"),
])
def test_unimplemented_modes_raise(override, needle, tmp_path):
    cfg = load_config("configs/tiny_synthetic.toml", [override, f"--job.dump_folder={tmp_path}"])
    with pytest.raises(ValueError, match=needle):
        Trainer(cfg)
