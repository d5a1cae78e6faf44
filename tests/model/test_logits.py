"""Completion logits == the matching rows of the full Hugging Face forward, on a tiny model with images."""
import dataclasses

import pytest
import torch

from tiny_batch import collate, tiny_sequences
from visd_core.config import Model
from visd_core.model import (build_model, build_unsharded, completion_hidden, completion_logits,
                              map_completion_logits)
from visd_core.model.policy import IMAGE_TOKEN_ID, VIDEO_TOKEN_ID


@pytest.fixture(scope="module")
def model():
    return build_unsharded(Model(), seed=0)


def full_forward_rows(model, batch):
    """HF's own forward (its own M-RoPE positions from mm_token_type_ids), then the rows that
    predict completion tokens: position t predicts token t+1."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=batch.pixel_values,
                   image_grid_thw=batch.image_grid_thw,
                   mm_token_type_ids=(batch.input_ids == IMAGE_TOKEN_ID).int()).logits
    return logits[:, :-1][batch.completion_mask[:, 1:]]


@pytest.mark.parametrize("left_pad", [True, False])
def test_completion_logits_equal_full_forward_rows(model, left_pad):
    batch = collate(tiny_sequences(3, seed=11), left_pad=left_pad)
    with torch.no_grad():
        out = completion_logits(model, batch)
        want = full_forward_rows(model, batch)
    n = int(batch.completion_mask.sum())
    assert out.logits.shape == (n, 151936) and out.logits.dtype == torch.float32
    torch.testing.assert_close(out.logits, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(out.targets, batch.input_ids[batch.completion_mask])
    assert out.seq_lens.tolist() == batch.completion_mask.sum(1).tolist() and int(out.seq_lens.sum()) == n


def test_completion_logits_are_differentiable(model):
    batch = collate(tiny_sequences(2, seed=3))
    out = completion_logits(model, batch)
    torch.nn.functional.cross_entropy(out.logits, out.targets).backward()
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0     # through the vision tower
    model.zero_grad(set_to_none=True)


def test_chunked_reduction_sees_every_row_once(model):
    batch = collate(tiny_sequences(3, seed=5))
    with torch.no_grad():
        want = completion_logits(model, batch)
    seen = []

    def topk_summary(z, y):     # what a teacher keeps: O(K) numbers per row
        seen.append((z.shape[0], z.requires_grad))
        return z.topk(4, dim=-1).indices, z.gather(1, y[:, None])

    parts, targets, seq_lens = map_completion_logits(model, batch, topk_summary, chunk_tokens=5)
    n = want.logits.shape[0]
    assert [s for s, _ in seen] == [5] * (n // 5) + ([n % 5] if n % 5 else [])
    assert not any(g for _, g in seen)
    assert torch.equal(torch.cat([i for i, _ in parts]), want.logits.topk(4, dim=-1).indices)
    torch.testing.assert_close(torch.cat([v for _, v in parts]), want.logits.gather(1, want.targets[:, None]))
    assert torch.equal(targets, want.targets) and torch.equal(seq_lens, want.seq_lens)


def test_bf16_compute_dtype_under_fsdp(world1):
    """FSDP2 mixed precision: fp32 shards, bf16 compute, logits come out bf16 (no fp32 copy)."""
    batch = collate(tiny_sequences(2, seed=2))
    fp32 = build_model(Model(), world1, seed=0)
    bf16 = build_model(Model(dtype="bfloat16"), world1, seed=0)
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    with torch.no_grad():
        a, b = completion_logits(fp32, batch).logits, completion_logits(bf16, batch).logits
    assert a.dtype == torch.float32 and b.dtype == torch.bfloat16
    torch.testing.assert_close(b.float(), a, rtol=0.05, atol=0.02)


def test_malformed_batches_are_rejected(model):
    batch = collate(tiny_sequences(2, seed=1), left_pad=False)
    first = batch.completion_mask.clone()
    first[0, 0] = True
    with pytest.raises(ValueError, match="position 0"):
        completion_logits(model, dataclasses.replace(batch, completion_mask=first))
    padded_row = int((batch.attention_mask[:, -1] == 0).nonzero()[0])     # right padding: a short row
    on_pad = batch.completion_mask.clone()
    on_pad[padded_row, -1] = True
    with pytest.raises(ValueError, match="padding"):
        completion_logits(model, dataclasses.replace(batch, completion_mask=on_pad))
    with pytest.raises(ValueError, match="image_grid_thw describes"):
        completion_logits(model, dataclasses.replace(batch, image_grid_thw=batch.image_grid_thw[:1]))
    ids = batch.input_ids.clone()
    ids[ids == IMAGE_TOKEN_ID] = VIDEO_TOKEN_ID
    with pytest.raises(ValueError, match="video"):
        completion_logits(model, dataclasses.replace(batch, input_ids=ids))


def _loss_and_grads(model, batch, fused: bool, objective: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The VISD policy loss (objective "visd") or the SFT cross-entropy ("sft") through completion_hidden
    and kernels.linear_* (fused) or through completion_logits and the logits ops, and every parameter's
    gradient (whole, under FSDP2)."""
    import kernels

    def loss_of(z, w, y, seq_lens):   # z: hidden states with lm_head weight w, or logits (w None)
        if objective == "sft":
            logp = kernels.token_logprobs(z, y) if w is None else kernels.linear_token_logprobs(z, w, y, chunk_tokens=4)
            return -logp.mean()
        old = torch.linspace(-12.0, -10.0, y.shape[0])
        adv = torch.linspace(-1.0, 1.0, len(seq_lens)).repeat_interleave(seq_lens)
        if w is None:
            return kernels.visd_policy_loss(z, y, old, adv, None, seq_lens, 0.0)
        return kernels.linear_visd_policy_loss(z, w, y, old, adv, None, seq_lens, 0.0, chunk_tokens=4)

    if fused:
        loss = completion_hidden(model, batch, lambda h: loss_of(h.hidden, h.weight, h.targets, h.seq_lens)).out
    else:
        cl = completion_logits(model, batch)
        loss = loss_of(cl.logits, None, cl.targets, cl.seq_lens)
    loss.backward()
    grads = {n: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).clone()
             for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def _assert_same_grads(grads: dict, want: dict) -> None:
    """fp32 rounding apart (the chunked matmul sums in another order): 1e-4 relative, 1e-5 of the largest entry."""
    assert grads.keys() == want.keys()
    for name, g in want.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-5 * float(g.abs().max()),
                                   msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("tied", [False, True])
def test_completion_hidden_gives_the_logits_path_loss_and_grads(tied):
    """hidden @ weight.T are completion_logits' rows, and the fused-linear loss has the logits path's
    value and parameter gradients (lm_head, tied embedding, backbone, vision tower)."""
    model = build_unsharded(Model(tie_embeddings=tied), seed=0)
    batch = collate(tiny_sequences(3, seed=7))
    with torch.no_grad():
        want = completion_logits(model, batch)
        got = completion_hidden(model, batch, lambda h: h.hidden @ h.weight.T)
    torch.testing.assert_close(got.out, want.logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.targets, want.targets) and torch.equal(got.seq_lens, want.seq_lens)
    for objective in ("visd", "sft"):
        (loss_f, grads_f), (loss_l, grads_l) = (_loss_and_grads(model, batch, fused, objective)
                                                for fused in (True, False))
        torch.testing.assert_close(loss_f, loss_l, rtol=1e-5, atol=1e-7)
        assert "model.visual.patch_embed.proj.weight" in grads_f
        _assert_same_grads(grads_f, grads_l)


@pytest.mark.parametrize("objective", ["visd", "sft"])
def test_completion_hidden_under_fsdp(world1, objective):
    """FSDP2 (a world of one, tied weights as in the tiny default): the root's lm_head weight is
    gathered inside the call — and again for the backward, which linear_token_logprobs recomputes
    from it; the fused loss and its gradients equal the logits path's."""
    model = build_model(Model(tie_embeddings=True), world1, seed=0)
    batch = collate(tiny_sequences(2, seed=8))
    (loss_f, grads_f), (loss_l, grads_l) = (_loss_and_grads(model, batch, fused, objective) for fused in (True, False))
    torch.testing.assert_close(loss_f, loss_l, rtol=1e-5, atol=1e-7)
    _assert_same_grads(grads_f, grads_l)


def test_completion_hidden_bf16_under_fsdp(world1):
    """bf16 compute: hidden states and the gathered weight are bf16, the loss agrees with the logits
    path's to bf16 rounding and the (fp32-reduced) gradients to a few bf16 ulps of their largest entry."""
    model = build_model(Model(dtype="bfloat16"), world1, seed=0)
    batch = collate(tiny_sequences(2, seed=9))
    dtypes = completion_hidden(model, batch, lambda h: (h.hidden.dtype, h.weight.dtype)).out
    assert dtypes == (torch.bfloat16, torch.bfloat16)
    (loss_f, grads_f), (loss_l, grads_l) = (_loss_and_grads(model, batch, fused, "visd") for fused in (True, False))
    torch.testing.assert_close(loss_f, loss_l, rtol=2**-7, atol=1e-6)
    assert grads_f.keys() == grads_l.keys()
    for name, g in grads_l.items():
        torch.testing.assert_close(grads_f[name], g, rtol=2**-5, atol=2**-6 * float(g.abs().max()),
                                   msg=lambda m: f"{name}: {m}")
