"""Session fixtures of the trainer's torchrun tests: the tiny dataset and one uninterrupted run that
the kill-and-resume, restart, two-node and GRPO tests compare against."""
import pytest

from visd_core.data.synthetic import generate
from tests.trainer.launch import overrides, run


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate(str(out), n=12, seed=3, n_val=6, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def straight(data, tmp_path_factory):
    dump = tmp_path_factory.mktemp("straight")
    run(overrides(data, dump))
    return dump
