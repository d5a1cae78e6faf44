"""Token-credit records straight from the fused loss pass: the numbers are the kernel's, the
tokens concatenate to the decoded completion, both advantage signs are picked first."""
import json
from types import SimpleNamespace

import pytest
import torch

import kernels
from visd_core.credit import credit_records, pick_rollouts, write_credit
from visd_core.tokenizer import load_tokenizer


def test_pick_alternates_signs_then_zero_advantages():
    assert pick_rollouts([0.5, -1.0, 1.5, 0.0, -0.2], 4) == [2, 1, 0, 4]
    assert pick_rollouts([0.0, 1.0, 0.0], 3) == [1, 0, 2]      # no negative one: the rest follow
    assert pick_rollouts([-1.0, -2.0], 5) == [1, 0]


@pytest.mark.parametrize("lam", [0.5, 0.0])
def test_records_hold_the_kernel_stats_of_each_picked_rollout(lam, tmp_path):
    tok = load_tokenizer("")
    g = torch.Generator().manual_seed(0)
    texts = ["<think>red cube at <t>1.5</t>s</think>", "<answer>B</answer>", "x 你好"]
    ids = [tok.encode(t) + [tok.im_end] for t in texts]
    seq_lens = torch.tensor([len(i) for i in ids])
    tokens = torch.tensor([t for row in ids for t in row])
    n, vocab = tokens.numel(), 151_936
    logits = torch.randn(n, vocab, generator=g)
    adv = torch.tensor([1.2, -0.7, 0.0])
    delta = torch.randn(n, generator=g) * 0.3 if lam > 0 else None
    _, st = kernels.visd_policy_loss(logits, tokens, torch.full((n,), -3.0), adv.repeat_interleave(seq_lens), delta,
                                     seq_lens, lam, eps_w=0.2, return_stats=True, with_entropy=True)
    record = SimpleNamespace(id="r1", task="mcq", question="Q <b>?</b>", options=["A. a", "B. b"], answer="B")
    results = [SimpleNamespace(total=float(i), components={"ans": 1.0, "thk_spa": None}) for i in range(3)]
    picks = pick_rollouts(adv.tolist(), 3)
    recs = credit_records(st, seq_lens, tokens, picks, tok=tok, samples=[SimpleNamespace(record=record)] * 3,
                          texts=texts, results=results, adv=adv, feedback=["fb0", "fb1", None] if lam else None,
                          lam=lam, eps_w=0.2, step=7, rl_step=3, algorithm="visd" if lam else "grpo")
    assert [r["rollout"] for r in recs] == [0, 1, 2]
    starts = [0, len(ids[0]), len(ids[0]) + len(ids[1])]
    for r in recs:
        b = r["rollout"]
        sl = slice(starts[b], starts[b] + len(ids[b]))
        assert "".join(r["tokens"]) == tok.decode(ids[b]) and len(r["tokens"]) == len(ids[b])
        for key, field in (("m", "token_weight"), ("delta", "delta"), ("ratio", "ratio"), ("entropy", "entropy")):
            assert r[key] == pytest.approx(getattr(st, field)[sl].tolist(), rel=1e-4, abs=1e-6), key
        # Â_t / A = (1 − λ) + λ m_t (visd eq. 26), also where A = 0
        assert r["adv_scale"] == pytest.approx([(1 - lam) + lam * m for m in r["m"]], rel=1e-4)
        assert r["advantage"] == pytest.approx(float(adv[b])) and r["reward"] == float(b)
        assert r["feedback"] == (["fb0", "fb1", None][b] if lam else None)
        assert r["question"] == "Q <b>?</b>" and r["answer"] == "B" and r["components"]["thk_spa"] is None
    if lam == 0:
        assert all(m == 1.0 for r in recs for m in r["m"]) and all(d == 0.0 for r in recs for d in r["delta"])
    path = write_credit(tmp_path / "credit", 7, recs)
    assert path.name == "step_000007.jsonl"
    assert [json.loads(x) for x in path.read_text().splitlines()] == json.loads(json.dumps(recs))
    assert not list((tmp_path / "credit").glob("*.tmp"))


def test_token_pieces_concatenate_to_the_decoded_text():
    tok = load_tokenizer("")
    ids = tok.encode("𝕏🦜 a\r\nb ǅ 你好") + [tok.im_end, 151_900]       # 151,900: an embedding padding row
    pieces = tok.decode_pieces(ids)
    assert len(pieces) == len(ids) and "".join(pieces) == tok.decode(ids)
    assert "\ufffd" not in "".join(pieces) and pieces[-2:] == ["<|im_end|>", ""]


def test_record_credit_in_a_world_of_one_writes_n_records(tmp_path, caplog):
    from visd_core.credit import record_credit
    tok = load_tokenizer("")
    ids = [tok.encode(t) + [tok.im_end] for t in ("a b", "c", "d e f", "g")]
    seq_lens = torch.tensor([len(i) for i in ids])
    tokens = torch.tensor([t for row in ids for t in row])
    adv = torch.tensor([0.0, -1.0, 2.0, 0.5])
    _, st = kernels.visd_policy_loss(torch.randn(tokens.numel(), 151_936), tokens, torch.zeros(tokens.numel()),
                                     adv.repeat_interleave(seq_lens), None, seq_lens, 0.0, return_stats=True)
    record = SimpleNamespace(id="r", task="mcq", question="q", options=[], answer="A")
    results = [SimpleNamespace(total=0.0, components={}) for _ in ids]
    cl, one = SimpleNamespace(seq_lens=seq_lens, targets=tokens), SimpleNamespace(rank=0, world_size=1, is_main=True)
    kw = dict(tok=tok, samples=[SimpleNamespace(record=record)] * 4, texts=["a b", "c", "d e f", "g"],
              results=results, feedback=None, lam=0.0, eps_w=0.2, step=12, rl_step=2, algorithm="grpo")
    path = record_credit(tmp_path, st, cl, adv, 3, one, **kw)
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert path.name == "step_000012.jsonl" and [(r["rank"], r["rollout"]) for r in recs] == [(0, 2), (0, 1), (0, 3)]
    assert recs[0]["entropy"] is None                  # asked without entropy: recorded as absent
    # a failure while recording is logged and skipped, never raised: on a rank it would hang the others
    kw.update(tok=None, step=13)
    assert record_credit(tmp_path, st, cl, adv, 3, one, **kw) is None and not (tmp_path / "step_000013.jsonl").exists()
    assert "token-credit record failed at step 13" in caplog.text


def test_token_pieces_of_bytes_that_are_no_utf8():
    tok = load_tokenizer("")
    rng = torch.Generator().manual_seed(1)
    for _ in range(200):                     # what an untrained policy samples: any ids at all
        ids = torch.randint(0, 151_936, (12,), generator=rng).tolist()
        assert "".join(tok.decode_pieces(ids)) == tok.decode(ids)
    head = tok.encode("🦜")[:1]              # the first bytes of a 4-byte character, then the end
    assert tok.decode_pieces(head + [tok.im_end]) == ["", "\ufffd<|im_end|>"]
    assert tok.decode_pieces(head) == ["\ufffd"]
