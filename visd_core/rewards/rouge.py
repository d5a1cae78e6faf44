"""ROUGE-1, ROUGE-2 and ROUGE-L F-measures for free-form answers.

Open-o3-Video scores a free-form answer by the mean of the three F-measures (google-research
`rouge_score`, whose tokenizer lowercases and keeps runs of [a-z0-9]); this is the same
computation without its Porter stemmer, so "runs" and "running" do not match here.
ROUGE-L's longest common subsequence uses the bit-parallel recurrence (Hyyrö 2004), so a
megabyte-long answer against a short reference costs one pass of small-integer arithmetic rather
than a quadratic table.
"""
from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _f1(overlap: int, n_ref: int, n_hyp: int) -> float:
    if overlap == 0:
        return 0.0
    p, r = overlap / n_hyp, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_n(ref: list[str], hyp: list[str], n: int) -> float:
    """F-measure of clipped n-gram overlap. Only the hypothesis n-grams that occur in the
    reference are counted (a C-level filter), so a long hypothesis costs one pass."""
    ref_ngrams = Counter(zip(*(ref[i:] for i in range(n))))
    hyp_hits = Counter(filter(ref_ngrams.__contains__, zip(*(hyp[i:] for i in range(n)))))
    overlap = sum(min(k, ref_ngrams[g]) for g, k in hyp_hits.items())
    return _f1(overlap, max(0, len(ref) - n + 1), max(0, len(hyp) - n + 1))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence: one bit per token of the shorter sequence,
    one step per token of the longer that occurs in it (the others leave the bits unchanged)."""
    if len(a) > len(b):
        a, b = b, a
    match: dict[str, int] = {}
    for i, tok in enumerate(a):
        match[tok] = match.get(tok, 0) | (1 << i)
    mask = (1 << len(a)) - 1
    v = mask                                     # a 0 bit marks a position that extends the LCS
    for m in filter(None, map(match.get, b)):
        u = v & m
        v = ((v + u) | (v - u)) & mask
    return len(a) - v.bit_count()


def rouge_l(ref: list[str], hyp: list[str]) -> float:
    return _f1(lcs_length(ref, hyp), len(ref), len(hyp))


def rouge_score(reference: str, hypothesis: str) -> float:
    """Mean of ROUGE-1, ROUGE-2 and ROUGE-L F-measures, in [0, 1] (Open-o3-Video's answer reward)."""
    ref, hyp = tokenize(reference), tokenize(hypothesis)
    if not ref or not hyp:
        return 0.0
    return (rouge_n(ref, hyp, 1) + rouge_n(ref, hyp, 2) + rouge_l(ref, hyp)) / 3
