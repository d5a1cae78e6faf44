"""Rollouts with a KV cache agree with a full forward, stop, pad and stay in lockstep."""
import dataclasses
import sys
import warnings
from pathlib import Path

import pytest
import torch

from visd_core.config import Config, Rollout
from visd_core.model.build import build_unsharded
from visd_core.model.logits import completion_logits
from visd_core.model.policy import ENDOFTEXT_ID, EOS_IDS
from tests.deprecations import is_deprecation
from visd_core.rollout import generate, sample_next

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from tiny_batch import collate, tiny_sequences  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return build_unsharded(Config().model, seed=0).eval()


def left_padded_prompts(seqs):
    return collate([{**s, "completion": []} for s in seqs])


def full_batch(seqs, roll, G):
    """prompt + generated completion rows, left-padded, as the trainer scores them."""
    return collate([{**seqs[b // G], "completion": comp} for b, comp in enumerate(roll.rows())])


def test_cached_logprobs_match_a_full_forward(model):
    seqs = tiny_sequences(2, seed=3)     # different prompt lengths and frame counts: left padding matters
    G = 3
    cfg = Rollout(group_size=G, temperature=0.7, top_p=1.0, max_new_tokens=6)
    roll = generate(model, left_padded_prompts(seqs), cfg, group_size=G, stop_ids=EOS_IDS, pad_id=ENDOFTEXT_ID,
                    generator=torch.Generator().manual_seed(0))
    assert roll.completion_ids.shape == (6, 6) and (roll.lengths == 6).all() and roll.truncated.all()
    with torch.no_grad():
        cl = completion_logits(model, full_batch(seqs, roll, G))
    ref = torch.log_softmax(cl.logits.float() / 0.7, -1).gather(-1, cl.targets[:, None]).squeeze(-1)
    got = roll.logprobs[roll.completion_mask]
    assert torch.allclose(got, ref, atol=2e-4), (got - ref).abs().max()


def test_same_seed_same_rollouts_and_groups_differ(model):
    seqs = tiny_sequences(1, seed=5)
    cfg = Rollout(group_size=4, temperature=1.0, top_p=0.95, max_new_tokens=5)
    runs = [generate(model, left_padded_prompts(seqs), cfg, group_size=4, stop_ids=EOS_IDS, pad_id=ENDOFTEXT_ID,
                     generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0].completion_ids, runs[1].completion_ids)
    assert len({tuple(r) for r in runs[0].rows()}) > 1     # the G samples of one prompt are not copies
    assert runs[0].prompt_index.tolist() == [0, 0, 0, 0]


def test_stop_padding_and_lockstep(model):
    seqs = tiny_sequences(2, seed=1)
    every_token = range(151936)            # any sampled token stops its row at once
    calls = []

    def sync(local_done):                  # another rank is still busy for two more steps
        calls.append(local_done)
        return len(calls) >= 3

    cfg = Rollout(group_size=2, temperature=1.0, top_p=1.0, max_new_tokens=8)
    roll = generate(model, left_padded_prompts(seqs), cfg, group_size=2, stop_ids=every_token, pad_id=ENDOFTEXT_ID,
                    generator=torch.Generator().manual_seed(0), sync=sync)
    assert calls == [True, True, True]     # kept stepping in lockstep, then stopped together
    assert roll.lengths.tolist() == [1, 1, 1, 1] and not roll.truncated.any()
    assert (roll.completion_ids[:, 1:] == ENDOFTEXT_ID).all() and not roll.completion_mask[:, 1:].any()
    assert (roll.logprobs[:, 1:] == 0).all()


def test_decoding_uses_no_deprecated_cache_api(model):
    # transformers 5.24 renamed the KV cache argument and output field past_key_values -> cache; the
    # old names warn (FutureWarning, and a log record) and go in 5.40, inside our transformers range
    seqs = tiny_sequences(1, seed=5)
    cfg = Rollout(group_size=2, temperature=1.0, top_p=0.95, max_new_tokens=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generate(model, left_padded_prompts(seqs), cfg, group_size=2, stop_ids=EOS_IDS, pad_id=ENDOFTEXT_ID,
                 generator=torch.Generator().manual_seed(0))
    assert [str(w.message) for w in caught if is_deprecation(w.category, str(w.message))] == []


def test_sample_next_top_p_and_temperature():
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    tok, logp = sample_next(logits, temperature=1.0, top_p=1e-6, generator=g)    # nucleus of one: greedy
    assert tok[0].item() == 0
    assert torch.allclose(logp, torch.log_softmax(logits, -1).gather(-1, tok[:, None]).squeeze(-1))
    # top_p = 0.7 on row 0: p = [.72, .26, .01, .004] -> only token 0 survives
    draws = {sample_next(logits, 1.0, 0.7, g)[0][0].item() for _ in range(50)}
    assert draws == {0}
    draws = {sample_next(logits, 1.0, 0.9, g)[0][0].item() for _ in range(200)}
    assert draws == {0, 1}
    _, logp_t = sample_next(logits, temperature=2.0, top_p=1.0, generator=g)
    assert logp_t[1].item() == pytest.approx(-torch.log(torch.tensor(4.0)).item())


def test_rejects_right_padded_prompts(model):
    seqs = tiny_sequences(2, seed=3)
    b = left_padded_prompts(seqs)
    bad = dataclasses.replace(b, attention_mask=b.attention_mask.flip(1), input_ids=b.input_ids.flip(1))
    if bad.attention_mask[:, -1].all():
        pytest.skip("equal-length prompts")
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, bad, Rollout(max_new_tokens=2), group_size=2, stop_ids=EOS_IDS, pad_id=ENDOFTEXT_ID)


def test_nucleus_draws_follow_the_renormalized_distribution():
    # p = [.4, .3, .2, .1]; top_p = 0.75 -> nucleus {0, 1, 2} (mass before token 3 is 0.9)
    p = torch.tensor([0.4, 0.3, 0.2, 0.1])
    logits = p.log().repeat(4000, 1)                 # 4000 independent rows in one call
    tok, _ = sample_next(logits, 1.0, 0.75, torch.Generator().manual_seed(1))
    freq = torch.bincount(tok, minlength=4).float() / tok.numel()
    assert freq[3] == 0
    expect = torch.tensor([0.4, 0.3, 0.2, 0.0]) / 0.9
    assert torch.allclose(freq, expect, atol=0.03), freq    # 3 sigma of a 4000-draw frequency ~ 0.023
    tok, _ = sample_next(logits, 1.0, 1.0, torch.Generator().manual_seed(2))
    assert torch.allclose(torch.bincount(tok, minlength=4).float() / tok.numel(), p, atol=0.03)


def test_fast_and_rejection_nucleus_paths_agree(monkeypatch):
    # Row 0 is peaked (its nucleus fits in the top-64 candidates: fast path); row 1 is nearly flat over
    # 5,000 tokens (nucleus of thousands: rejection path). Both in one call, 3,000 draws each.
    V = 5000
    peaked = torch.full((V,), -30.0)
    peaked[[7, 11, 4000]] = torch.tensor([2.0, 1.0, 1.0])     # a tie at the nucleus boundary: both 11 and 4000
    flat = torch.randn(V, generator=torch.Generator().manual_seed(0)) * 0.1
    logits = torch.stack([peaked, flat]).repeat(3000, 1)
    from visd_core import rollout
    slow_rows = []
    real = rollout._nucleus_by_rejection
    monkeypatch.setattr(rollout, "_nucleus_by_rejection", lambda p, *a: slow_rows.append(p.shape[0]) or real(p, *a))
    tok, logp = sample_next(logits, 1.0, 0.6, torch.Generator().manual_seed(3))
    assert slow_rows == [3000]                     # every flat row, and only those, took the rejection path
    p0 = torch.softmax(peaked, -1)
    # p ≈ [.58, .21, .21]: token 7's strictly-higher mass is 0 < .6; tokens 11 and 4000 have .58 < .6 -> all in
    freq = torch.bincount(tok[0::2], minlength=V).float() / 3000
    expect = torch.zeros(V)
    expect[[7, 11, 4000]] = p0[[7, 11, 4000]] / p0[[7, 11, 4000]].sum()
    assert torch.allclose(freq, expect, atol=0.03)
    assert torch.allclose(logp, torch.log_softmax(logits, -1).gather(-1, tok[:, None]).squeeze(-1), atol=1e-5)
    # the flat row: compare against the rejection sampler run directly on the same distribution
    ref = rollout._nucleus_by_rejection(torch.softmax(flat, -1).repeat(3000, 1), 0.6, torch.Generator().manual_seed(4))
    p_flat = torch.softmax(flat, -1)
    cut = p_flat.sort(descending=True).values.cumsum(0)
    n_nucleus = int((cut - p_flat.sort(descending=True).values < 0.6).sum())
    for draws in (tok[1::2], ref):
        assert (p_flat[draws] >= p_flat.sort(descending=True).values[n_nucleus - 1]).all()   # only nucleus tokens
        assert len(set(draws.tolist())) > 1000                                              # spread over it


def test_greedy_is_the_argmax_and_deterministic(model):
    logits = torch.tensor([[0.5, 2.0, 2.0, -1.0], [3.0, -2.0, 0.0, 1.0]])
    tok, logp = sample_next(logits, temperature=0.0, top_p=0.5, generator=None)
    assert tok.tolist() == [1, 0]                   # a tie goes to the lower id
    assert torch.allclose(logp, torch.log_softmax(logits, -1).gather(-1, tok[:, None]).squeeze(-1))

    seqs = tiny_sequences(2, seed=3)
    cfg = Rollout(group_size=1, temperature=0.0, top_p=1.0, max_new_tokens=5)
    runs = [generate(model, left_padded_prompts(seqs), cfg, group_size=1, stop_ids=EOS_IDS, pad_id=ENDOFTEXT_ID,
                     generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    assert torch.equal(runs[0].completion_ids, runs[1].completion_ids)     # the generator plays no part
    with torch.no_grad():                           # every generated token is the full forward's argmax
        cl = completion_logits(model, full_batch(seqs, runs[0], 1))
    assert torch.equal(cl.logits.argmax(-1), cl.targets)


class _FavoursPlaceholders:
    """The model, with <|image_pad|> and <|video_pad|> made by far the likeliest next tokens."""

    def __init__(self, model):
        self.inner, self.config, self.model = model, model.config, model.model

    def __call__(self, **kw):
        out = self.inner(**kw)
        out.logits[..., [self.config.image_token_id, self.config.video_token_id]] = 1e4
        return out


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_vision_placeholders_are_never_sampled(model, temperature):
    """A completion holding <|image_pad|> could not be replayed (no image behind it): banned."""
    seqs = tiny_sequences(2, seed=2)
    cfg = Rollout(group_size=2, temperature=temperature, top_p=0.95, max_new_tokens=4)
    roll = generate(_FavoursPlaceholders(model), left_padded_prompts(seqs), cfg, group_size=2, stop_ids=EOS_IDS,
                    pad_id=ENDOFTEXT_ID, generator=torch.Generator().manual_seed(0))
    ids = roll.completion_ids[roll.completion_mask]
    assert ids.numel() > 0
    assert not torch.isin(ids, torch.tensor([model.config.image_token_id, model.config.video_token_id])).any()
    assert torch.isfinite(roll.logprobs).all()
