import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visd_core.rewards.rouge import lcs_length, rouge_l, rouge_n, rouge_score, tokenize


def test_tokenize_like_rouge_score():
    assert tokenize("The Red-Circle, moves!! 3x") == ["the", "red", "circle", "moves", "3x"]
    assert tokenize("日本語 🎥") == []


def test_hand_worked_scores():
    ref, hyp = tokenize("the cat sat on the mat"), tokenize("the cat on the mat")
    # unigrams: overlap 5 of hyp 5 / ref 6 -> F = 2*1*(5/6)/(1+5/6) = 10/11
    assert rouge_n(ref, hyp, 1) == pytest.approx(10 / 11)
    # bigrams: ref {the cat, cat sat, sat on, on the, the mat}, hyp {the cat, cat on, on the, the mat}: 3
    assert rouge_n(ref, hyp, 2) == pytest.approx(2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5))
    assert lcs_length(ref, hyp) == 5
    assert rouge_l(ref, hyp) == pytest.approx(10 / 11)
    assert rouge_score("the cat sat on the mat", "the cat on the mat") == pytest.approx(
        (10 / 11 + 2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5) + 10 / 11) / 3)


def test_identical_disjoint_and_empty():
    assert rouge_score("a red circle", "A red circle.") == 1.0
    assert rouge_score("a red circle", "blue square") == 0.0
    assert rouge_score("", "anything") == 0.0
    assert rouge_score("anything", "") == 0.0
    assert rouge_score("one", "one") == pytest.approx((1 + 0 + 1) / 3)   # no bigram in a single word


def _lcs_dp(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abcd"), max_size=30), st.lists(st.sampled_from("abcd"), max_size=30))
def test_bit_parallel_lcs_matches_the_dp_table(a, b):
    assert lcs_length(a, b) == _lcs_dp(a, b) == lcs_length(b, a)


def test_long_hypothesis_is_linear():
    rng = random.Random(0)
    hyp = " ".join(rng.choice(["red", "circle", "moves", "left", "the"]) for _ in range(100_000))
    assert 0.0 < rouge_score("the red circle moves left", hyp) < 0.01
