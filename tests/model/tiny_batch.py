"""Random prompt+completion sequences with images for the tiny model, and their padded collation."""
from __future__ import annotations

import torch

from visd_core.model.logits import PolicyBatch
from visd_core.model.policy import ENDOFTEXT_ID, IMAGE_TOKEN_ID, VISION_END_ID, VISION_START_ID

PATCH_DIM = 3 * 2 * 14 * 14      # channels x temporal patch x patch x patch


def tiny_sequences(n: int, *, seed: int) -> list[dict]:
    """n sequences: text, 1-2 frames (each an image with its own even patch grid), text, completion."""
    g = torch.Generator().manual_seed(seed)

    def text(lo, hi):
        return torch.randint(0, 151643, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist()

    seqs = []
    for i in range(n):
        ids, grids = text(2, 5), []
        for _ in range(1 + i % 2):
            h, w = (2 * int(torch.randint(1, 3, (1,), generator=g)) for _ in range(2))
            grids.append([1, h, w])
            ids += [VISION_START_ID] + [IMAGE_TOKEN_ID] * (h * w // 4) + [VISION_END_ID] + text(1, 3)
        completion = text(2, 7)
        seqs.append(dict(prompt=ids, completion=completion, grids=grids,
                         pixels=torch.randn(sum(h * w for _, h, w in grids), PATCH_DIM, generator=g)))
    return seqs


def collate(seqs: list[dict], *, left_pad: bool = True) -> PolicyBatch:
    S = max(len(s["prompt"]) + len(s["completion"]) for s in seqs)
    ids = torch.full((len(seqs), S), ENDOFTEXT_ID)
    att = torch.zeros(len(seqs), S, dtype=torch.long)
    comp = torch.zeros(len(seqs), S, dtype=torch.bool)
    for b, s in enumerate(seqs):
        row = s["prompt"] + s["completion"]
        start = S - len(row) if left_pad else 0
        ids[b, start:start + len(row)] = torch.tensor(row)
        att[b, start:start + len(row)] = 1
        comp[b, start + len(s["prompt"]):start + len(row)] = True
    return PolicyBatch(ids, att, comp, torch.cat([s["pixels"] for s in seqs]),
                       torch.tensor([g for s in seqs for g in s["grids"]]))
