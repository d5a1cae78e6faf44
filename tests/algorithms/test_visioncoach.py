"""VisionCoach's pieces (visioncoach Algorithm 1, eq. 1–2, App. B, App. D.3) on hand-made reward tables,
and its losses (GSPO + β·KL, the self-distillation NLL) against dense float64 references."""
import math
from types import SimpleNamespace

import pytest
import torch

import kernels
from visd_core.algorithms.base import TokenLogprobs
from visd_core.algorithms.gspo import GSPO
from visd_core.algorithms.visioncoach import (candidate_score, distill_selection, gating_kind, hard_samples, r_acc,
                                              weighted_sequence_nll)
from visd_core.config import load_config


def comps(**kw):
    """A component dict as score_group writes it: every key present, None where the task lacks it."""
    base = dict.fromkeys(("ans", "fmt", "ans_tmp", "ans_spa", "thk_tmp", "thk_spa"))
    base.update(kw)
    return base


# ------------------------------------------------------------------------------ reward mapping
def test_r_acc_is_the_tasks_answer_reward():
    assert r_acc(comps(ans=1.0, ans_tmp=0.3)) == 1.0          # temporal MCQ: the option is the accuracy
    assert r_acc(comps(ans_tmp=0.4, thk_tmp=0.9)) == 0.4      # temporal grounding: interval IoU
    assert r_acc(comps(ans_spa=0.7, thk_spa=0.1)) == 0.7      # spatial grounding: box IoU
    assert r_acc(comps(fmt=1.0)) is None


def test_candidate_score_means_only_what_applies():
    assert candidate_score(comps(ans=1.0, thk_tmp=0.5, thk_spa=0.0)) == pytest.approx(0.5)
    assert candidate_score(comps(ans_tmp=0.6, thk_tmp=0.2)) == pytest.approx(0.4)
    assert candidate_score(comps(ans=0.0, fmt=1.0)) == 0.0       # fmt is not a candidate signal
    assert candidate_score(comps(fmt=1.0)) == 0.0


# ------------------------------------------------------------------------------ hard samples
@pytest.mark.parametrize("means, k, expect", [
    ([1.0, 2.5, 2.21, 0.0], 2.21, [0, 3]),       # R̄ = k is not hard (strict <)
    ([3.0, 3.0], 2.21, []),
    ([0.1, 0.2], 2.21, [0, 1]),
    ([], 1.0, []),
])
def test_hard_samples(means, k, expect):
    assert hard_samples(means, k) == expect


# ------------------------------------------------------------------------------ Cᵢ and top-N
def test_candidates_beat_the_original_mean_and_top_n_ranks_by_answer():
    orig = [comps(ans=0.0, thk_tmp=0.2), comps(ans=1.0, thk_tmp=0.2)]           # scores 0.1, 0.6 → bar 0.35
    new = [comps(ans=0.0, thk_tmp=0.8),      # 0.4  > bar, acc 0
           comps(ans=1.0, thk_tmp=0.0),      # 0.5  > bar, acc 1
           comps(ans=0.0, thk_tmp=0.6),      # 0.3  ≤ bar
           comps(ans=1.0, thk_tmp=0.9)]      # 0.95 > bar, acc 1
    cand, chosen = distill_selection(orig, new, top_n=2)
    assert cand == [0, 1, 3]
    assert chosen == [3, 1]                  # acc ties broken by the higher candidate score


def test_empty_candidates_distill_nothing():
    orig = [comps(ans=1.0, thk_tmp=1.0)] * 4
    new = [comps(ans=1.0, thk_tmp=1.0)] * 4  # equal is not better (strict >)
    assert distill_selection(orig, new, top_n=2) == ([], [])


def test_full_ties_keep_rollout_order_and_top_n_caps():
    orig = [comps(ans=0.0)] * 2
    new = [comps(ans=1.0)] * 4
    cand, chosen = distill_selection(orig, new, top_n=3)
    assert cand == [0, 1, 2, 3] and chosen == [0, 1, 2]
    assert distill_selection(orig, new, top_n=1)[1] == [0]


# ------------------------------------------------------------------------------ gating (Table 13)
@pytest.mark.parametrize("tmp, spa, bt, bs, kind", [
    (0.1, 0.9, 0.5, 0.5, "numpro"),      # temporal below the batch mean
    (0.9, 0.1, 0.5, 0.5, "darken"),      # spatial below
    (0.4, 0.1, 0.5, 0.5, "darken"),      # both below: the larger shortfall (0.4 > 0.1)
    (0.2, 0.4, 0.5, 0.5, "numpro"),
    (0.9, 0.9, 0.5, 0.5, "raw"),         # neither
    (None, 0.1, None, 0.5, "darken"),    # a task without a temporal reward
    (None, None, None, None, "raw"),
])
def test_gating(tmp, spa, bt, bs, kind):
    assert gating_kind(tmp, spa, bt, bs) == kind


# ------------------------------------------------------------------------------ losses vs dense references
def _ragged(seed, lens, V=97, H=16, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    N = sum(lens)
    hidden = torch.randn(N, H, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    W = (torch.randn(V, H, generator=g, dtype=torch.float64) * 0.3).to(dtype).requires_grad_()
    tokens = torch.randint(0, V, (N,), generator=g)
    return hidden, W, tokens, torch.tensor(lens)


def _dense_logp(hidden, W, tokens, T=1.0):
    z = (hidden.double() @ W.double().T) / T
    return torch.log_softmax(z, -1).gather(1, tokens[:, None]).squeeze(1)


@pytest.mark.parametrize("lens", [[5, 1, 9], [300, 7]])       # 300 crosses the op's 256-token chunk
def test_sd_nll_and_gradient_match_dense(lens):
    hidden, W, tokens, seq_lens = _ragged(0, lens)
    w = torch.rand(len(lens), generator=torch.Generator().manual_seed(1)).double()
    lp = kernels.linear_token_logprobs(hidden, W, tokens)
    got = weighted_sequence_nll(lp, seq_lens, w)
    gh, gw = torch.autograd.grad(got, (hidden, W))

    h64, w64 = hidden.detach().double().requires_grad_(), W.detach().double().requires_grad_()
    ref_lp = _dense_logp(h64, w64, tokens)
    parts = torch.split(ref_lp, lens)
    ref = sum(wj * -(p.mean()) for wj, p in zip(w, parts))        # eq. 1 per sequence, weighted
    rh, rw = torch.autograd.grad(ref, (h64, w64))
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(gh.double(), rh, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gw.double(), rw, rtol=1e-4, atol=1e-6)


def test_sd_nll_zero_weight_padding_is_zero_with_zero_grad():
    hidden, W, tokens, seq_lens = _ragged(2, [4])
    loss = weighted_sequence_nll(kernels.linear_token_logprobs(hidden, W, tokens), seq_lens, torch.zeros(1))
    gh, gw = torch.autograd.grad(loss, (hidden, W))
    assert loss.item() == 0.0 and gh.abs().max() == 0 and gw.abs().max() == 0


class _FakeServices:
    """Only what GSPO.policy_loss uses: replay_logprobs from fixed hidden states per model."""

    def __init__(self, cfg, hidden, ref_hidden, W, tokens, seq_lens):
        self.cfg, self.hidden, self.ref_hidden, self.W, self.tokens, self.seq_lens = cfg, hidden, ref_hidden, W, tokens, seq_lens
        self.model = "policy"

    def replay_logprobs(self, model, rows, temperature):
        h = self.hidden if model == "policy" else self.ref_hidden
        return TokenLogprobs(kernels.linear_token_logprobs(h, self.W, self.tokens, temperature), self.tokens,
                             self.seq_lens)


@pytest.mark.parametrize("beta, agg", [(0.04, "seq_mean_token_mean"), (0.0, "seq_mean_token_mean"), (0.5, "token_mean")])
def test_gspo_plus_kl_matches_dense(beta, agg):
    lens = [6, 3, 11, 2]
    T = 0.7
    hidden, W, tokens, seq_lens = _ragged(3, lens)
    ref_hidden = (hidden.detach() + 0.2 * torch.randn(hidden.shape, generator=torch.Generator().manual_seed(4)))
    with torch.no_grad():          # behaviour log-probs near the current ones, some sequences outside the clip
        old = _dense_logp(hidden, W, tokens, T).float() + 0.001 * torch.randn(sum(lens), generator=torch.Generator().manual_seed(5))
    adv = torch.tensor([1.0, -0.5, 0.3, -1.2])
    cfg = load_config(None, [f"--algorithm.kl_beta={beta}", f"--algorithm.loss_agg=\"{agg}\"",
                             f"--rollout.temperature={T}"])
    svc = _FakeServices(cfg, hidden, ref_hidden, W, tokens, seq_lens)
    algo = GSPO(svc)
    algo.reference = "reference"
    roll = SimpleNamespace(completion_ids=tokens[None], completion_mask=torch.ones(1, len(tokens), dtype=torch.bool),
                           logprobs=old[None])
    batch = SimpleNamespace(owner=[SimpleNamespace(prompt_ids=[])] * len(lens), completions=[[]] * len(lens), roll=roll)
    timer = {}
    loss, stats = algo.policy_loss(batch, adv, timer)
    gh, gw = torch.autograd.grad(loss, (hidden, W))

    # dense float64: s_i = exp(mean_t (log π − log π_old)), −mean_i min(s A, clip(s) A) + β·agg(k3)
    h64, w64 = hidden.detach().double().requires_grad_(), W.detach().double().requires_grad_()
    lp = _dense_logp(h64, w64, tokens, T)
    ref_lp = _dense_logp(ref_hidden.double(), W.detach().double(), tokens, T)
    lo, hi = cfg.algorithm.gspo_clip_low, cfg.algorithm.gspo_clip_high
    per_seq, kl_parts = [], []
    for p, o, r, a in zip(torch.split(lp, lens), torch.split(old.double(), lens), torch.split(ref_lp, lens), adv.double()):
        s = torch.exp((p - o).mean())
        per_seq.append(-torch.minimum(s * a, s.clamp(1 - lo, 1 + hi) * a))
        kl_parts.append(torch.exp(r - p) - (r - p) - 1)
    ref = torch.stack(per_seq).mean()
    if beta > 0:
        kl = (torch.stack([k.mean() for k in kl_parts]).mean() if agg == "seq_mean_token_mean"
              else torch.cat(kl_parts).mean())
        ref = ref + beta * kl
        assert stats["kl/mean"] == pytest.approx(kl.item(), rel=1e-5)
        assert "reference" in timer
    else:
        assert "kl/mean" not in stats and "reference" not in timer
    rh, rw = torch.autograd.grad(ref, (h64, w64))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-7)
    torch.testing.assert_close(gh.double(), rh, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(gw.double(), rw, rtol=1e-4, atol=1e-7)
    assert 0.0 <= stats["gspo/clip_frac"] <= 1.0 and math.isfinite(stats["gspo/ratio_mean"])
