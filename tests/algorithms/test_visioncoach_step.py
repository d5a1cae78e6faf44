"""VisionCoach's Algorithm 1 wiring, one step on scripted services: which samples are hard, which
prompt each gets, what is re-rolled, which prompted rollouts are distilled onto which input with which
weight, and the step's metrics — checked by hand against the reward tables (a 1-rank gloo group; the
trainer's services are replaced by a recorder that returns scripted rewards)."""
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from visd_core.algorithms.base import GroupRollouts, TokenLogprobs
from visd_core.algorithms.visioncoach import VisionCoach
from visd_core.config import load_config
from visd_core.rewards.reward import RewardResult

G = 4


def comps(**kw):
    base = dict.fromkeys(("ans", "fmt", "ans_tmp", "ans_spa", "thk_tmp", "thk_spa"))
    base.update(kw)
    return base


def result(**kw):
    c = comps(**kw)
    return RewardResult(total=sum(v for v in c.values() if v is not None), components=c, diagnosis=None)


# Original rollouts: sample "a" is weak, sample "b" strong. Totals: a → 1, 1, 1, 2 (R̄ 1.25), b → 2.5 each.
ORIGINAL = {
    "a": [result(ans=0.0, fmt=1.0, thk_tmp=0.0)] * 3 + [result(ans=1.0, fmt=1.0, thk_tmp=0.0)],
    "b": [result(ans=1.0, fmt=1.0, thk_tmp=0.5)] * 4,
}
# "a" re-rolled with its prompt: candidate scores (mean of r_acc, r_tmp) 0.0, 0.25, 0.5, 1.0 against
# the original mean score 0.125 → Cᵢ = {1, 2, 3}; top-2 by r_acc: 3 (acc 1, score 1.0), then 2 (acc 1, 0.5).
PROMPTED = {"a": [result(ans=0.0, fmt=1.0, thk_tmp=0.0), result(ans=0.0, fmt=1.0, thk_tmp=0.5),
                  result(ans=1.0, fmt=1.0, thk_tmp=0.0), result(ans=1.0, fmt=1.0, thk_tmp=1.0)]}


class Recorder:
    """The trainer's services, scripted: prompts "a" and "b", rollouts of distinct token ids."""

    def __init__(self, cfg):
        self.cfg, self.step, self.rl_steps, self.out, self.dtype = cfg, 0, 10, None, torch.float32
        self.d = SimpleNamespace(rank=0, world_size=1, device=torch.device("cpu"), is_main=True)
        self.theta = torch.zeros((), requires_grad=True)
        self.model = "policy"
        self.loaded, self.replays, self.rollouts, self.losses = [], [], [], []

    def sample(self, rid, prompt_ids):
        return SimpleNamespace(record=SimpleNamespace(id=rid), prompt_ids=prompt_ids)

    def next_samples(self, n):
        return [self.sample("a", [1, 2]), self.sample("b", [3, 4])][:n]

    def load_sample(self, sample, *, visual_prompt=None, clip=None):
        self.loaded.append((sample.record.id, visual_prompt))
        return self.sample(sample.record.id, sample.prompt_ids + [100 + len(visual_prompt)])

    def rollout(self, samples, group_size):
        base = 10 * (len(self.rollouts) + 1)
        self.rollouts.append([s.record.id for s in samples])
        completions = [[base + b, base + b + 1] for b in range(len(samples) * group_size)]
        B = len(completions)
        ids = torch.tensor(completions)
        roll = SimpleNamespace(completion_ids=ids, completion_mask=torch.ones(B, 2, dtype=torch.bool),
                               logprobs=torch.full((B, 2), -1.0), truncated=torch.zeros(B, dtype=torch.bool),
                               lengths=torch.full((B,), 2))
        return GroupRollouts(samples=samples, roll=roll, completions=completions, texts=[""] * B,
                             group_size=group_size)

    def score(self, batch, rl_step):
        table = ORIGINAL if len(self.rollouts) == 1 else PROMPTED
        batch.results = [r for s in batch.samples for r in table[s.record.id]]
        batch.rewards = torch.tensor([r.total for r in batch.results])

    def replay_logprobs(self, model, rows, temperature):
        self.replays.append((model, [(list(p), list(c)) for p, c, _ in rows], temperature))
        tokens = torch.tensor([t for _, c, _ in rows for t in c])
        return TokenLogprobs(self.theta - 1.0 + torch.zeros(len(tokens)), tokens,
                             torch.tensor([len(c) for _, c, _ in rows]))

    def frozen_copy(self, param_dtype=None):
        return "reference"

    def backward(self, loss, *, inject=True):
        self.losses.append(loss.item())
        loss.backward()
        return loss.item()

    def optimizer_step(self, finite):
        return {"optim/skipped_nonfinite": float(not finite)}

    def reward_metrics(self, batch):
        return {"reward/total": float(batch.rewards.mean())}


@pytest.fixture(autouse=True)
def one_rank_group():
    """The step's all-reduces need a process group: a 1-rank gloo one (or one an earlier in-process
    test left behind, which is then left alone)."""
    if dist.is_initialized():
        assert dist.get_world_size() == 1
        yield
        return
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("condition", ["prompted", "raw"])
def test_one_step_follows_algorithm_1(condition):
    cfg = load_config(None, ["--algorithm.name=visioncoach", "--algorithm.kl_beta=0.04", "--training.rl_batch_size=2",
                             f"--rollout.group_size={G}", "--visioncoach.hard_threshold=2.21",
                             "--visioncoach.selector=gating", f"--visioncoach.sd_condition={condition}"])
    svc = Recorder(cfg)
    m = VisionCoach(svc).step(1)

    # line 6: R̄ = 1.25 for "a" (< 2.21, hard), 2.5 for "b" (easy)
    assert m["vc/hard_frac"] == 0.5
    # line 8, gating: "a"'s temporal reward 0.0 is below the batch mean 0.25 → frame numbers
    assert svc.loaded == [("a", "numpro")] and m["vc/prompt/numpro"] == 1 and m["vc/prompt/darken"] == 0
    # lines 10-12: G more rollouts of the prompted "a" only
    assert svc.rollouts == [["a", "b"], ["a"]]
    # R̄′ = (1 + 1.5 + 2 + 3) / 4 = 1.875 against R̄ = 1.25: gain (1.875 − 1.25) / 1.25
    assert m["vc/reward_gain"] == pytest.approx((1.875 - 1.25) / 1.25)
    assert m["vc/sd_candidates"] == 3 and m["vc/sd_samples"] == 1 and m["vc/sd_rows"] == 2
    # replays: the reference, the policy on the 8 original rollouts, then the distilled top-2 (3, 2)
    (ref_model, ref_rows, _), (pol_model, pol_rows, pol_T), (sd_model, sd_rows, sd_T) = svc.replays
    assert ref_model == "reference" and pol_model == sd_model == "policy" and ref_rows == pol_rows
    assert len(pol_rows) == 8 and pol_T == cfg.rollout.temperature and sd_T == 1.0
    prompt = [1, 2, 100 + len("numpro")] if condition == "prompted" else [1, 2]
    assert sd_rows == [(prompt, [23, 24]), (prompt, [22, 23])]     # 2nd rollout call: base 20, rows 3 and 2
    # eq. 1-2: L_SD,a = −mean log π = 1 (log π = −1 everywhere); α/P · L_SD,a = 0.1 / 2
    assert m["vc/sd_loss"] == pytest.approx(1.0)
    assert svc.losses[-1] == pytest.approx(0.1 * 1.0 / 2)
    # dL/dθ: GSPO's is −mean_i A_i = 0 (every ratio is exp(θ) = 1, unclipped, and each group's advantages
    # sum to 0); the KL's is 0 (π = π_ref); the SD term's is α · d/dθ Σ_j (1/(P·|S|)) · −(θ − 1) = −α/P
    assert svc.theta.grad.item() == pytest.approx(-0.1 / 2, abs=1e-6)


def test_no_hard_sample_means_no_rerollout_and_no_distillation():
    cfg = load_config(None, ["--algorithm.name=visioncoach", "--training.rl_batch_size=2", f"--rollout.group_size={G}",
                             "--visioncoach.hard_threshold=0.1", "--visioncoach.selector=fixed:darken"])
    svc = Recorder(cfg)
    m = VisionCoach(svc).step(1)
    assert m["vc/hard_frac"] == 0 and svc.loaded == [] and svc.rollouts == [["a", "b"]]
    assert len(svc.replays) == 1 and "vc/reward_gain" not in m and m["vc/sd_rows"] == 0
    assert "kl/mean" not in m            # β = 0: no reference replay


def test_fixed_selector_and_batch_mean_threshold():
    cfg = load_config(None, ["--algorithm.name=visioncoach", "--training.rl_batch_size=2", f"--rollout.group_size={G}",
                             "--visioncoach.hard_threshold=\"batch_mean\"", "--visioncoach.selector=fixed:circle"])
    svc = Recorder(cfg)
    m = VisionCoach(svc).step(1)
    assert svc.loaded == [("a", "circle")] and m["vc/prompt/circle"] == 1     # batch mean 1.875: only "a"


class _StubSelector:
    """VPSelector's interface (visd_core/selector/model.py): meta and predict(records)."""

    def __init__(self, kinds, label_counts):
        self.kinds, self.meta, self.asked = kinds, {"label_counts": label_counts}, []

    def predict(self, records, videos=None):
        self.asked.append([r.id for r in records])
        return self.kinds[:len(records)]


def test_model_selector_picks_the_kind_and_api_prompt_needs_clip(monkeypatch, tmp_path):
    import visd_core.selector as selector_pkg
    stub = _StubSelector(["circle"], {"circle": 3, "raw": 5})
    monkeypatch.setattr(selector_pkg.VPSelector, "from_dir", classmethod(lambda cls, path, **kw: stub))
    args = ["--algorithm.name=visioncoach", "--training.rl_batch_size=2", f"--rollout.group_size={G}",
            "--visioncoach.selector=model", f"--visioncoach.selector_path={tmp_path}"]
    svc = Recorder(load_config(None, args))
    m = VisionCoach(svc).step(1)
    assert stub.asked == [["a"]] and svc.loaded == [("a", "circle")] and m["vc/prompt/circle"] == 1

    stub2 = _StubSelector(["api_prompt"], {"raw": 5})      # never trained on it: falls back to raw
    monkeypatch.setattr(selector_pkg.VPSelector, "from_dir", classmethod(lambda cls, path, **kw: stub2))
    svc = Recorder(load_config(None, args))
    VisionCoach(svc).step(1)
    assert svc.loaded == [("a", "raw")]

    monkeypatch.setattr(selector_pkg.VPSelector, "from_dir",
                        classmethod(lambda cls, path, **kw: _StubSelector([], {"api_prompt": 2})))
    with pytest.raises(ValueError, match="clip_path"):
        VisionCoach(Recorder(load_config(None, args)))
