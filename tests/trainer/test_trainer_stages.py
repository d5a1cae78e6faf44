"""SFT -> RL hand-over in one process (a world of one, the same FSDP2 code path): the RL stage
starts with a fresh optimizer and takes its own batch size."""
import torch

from visd_core.config import load_config
from visd_core.data.synthetic import generate
from visd_core.trainer import Trainer
from tests.trainer.launch import ROOT


def test_rl_stage_starts_with_a_fresh_optimizer_and_its_own_batch(tmp_path, monkeypatch):
    data = tmp_path / "data"
    generate(str(data), n=8, seed=5, n_val=2, workers=1, progress=False)
    cfg = load_config(ROOT / "configs" / "tiny_synthetic.toml", [
        f"--data.train_path={data / 'train.jsonl'}", f"--job.dump_folder={tmp_path / 'run'}", "--data.num_frames=4",
        "--rollout.max_new_tokens=6", "--training.sft_steps=2", "--training.rl_steps=1", "--training.rl_batch_size=2",
        "--checkpoint.every=0", "--checkpoint.export=false", "--eval.every=0"])
    trainer = Trainer(cfg)
    asked = []
    real_next = trainer.next_samples
    monkeypatch.setattr(trainer, "next_samples", lambda n, **kw: asked.append(n) or real_next(n, **kw))
    try:
        trainer.train()
        steps = {float(s["step"]) for s in trainer.opt.state.values()}
        assert steps == {1.0}            # two SFT steps happened, yet Adam has seen only the RL one
        assert asked == [1, 1, 2]        # SFT: training.batch_size; RL: training.rl_batch_size
    finally:
        trainer.close()
