"""The labels CLI with a local checkpoint as proxy reasoner: greedy answers on the prompted policy
input, batched; resumable (a rerun asks only about new ids, a torn last line is dropped)."""
import json

import torch

from visd_core.config import Data, Model
from visd_core.data.model_inputs import decode_frames, load_prompt
from visd_core.data.reader import JsonlReader
from visd_core.model.logits import mrope_position_ids
from visd_core.model.policy import EOS_IDS
from visd_core.selector import proxy
from visd_core.selector.__main__ import main
from visd_core.selector.proxy import CheckpointReasoner, ProxyJob
from visd_core.tokenizer import load_tokenizer

KINDS4 = {"circle", "darken", "numpro", "raw"}


def run(data, out, ckpt, limit):
    return main(["labels", "--data", str(data), "--out", str(out), "--reasoner-checkpoint", ckpt,
                 "--limit", str(limit), "--max-new-tokens", "4", "--max-pixels", "9408", "--batch-size", "8",
                 "--no-progress"])


def test_checkpoint_reasoner_labels_and_resumes(synthetic, tiny_checkpoint, tmp_path, monkeypatch):
    _, data, _ = synthetic
    asked = []
    answer = proxy.CheckpointReasoner.answer

    def spy(self, jobs):
        asked.append([(j.record.id, j.kind) for j in jobs])
        return answer(self, jobs)

    monkeypatch.setattr(proxy.CheckpointReasoner, "answer", spy)
    out = tmp_path / "labels.jsonl"
    assert run(data, out, tiny_checkpoint, 2) == 0
    first = out.read_text().splitlines()
    got = [json.loads(line) for line in first]
    assert len(got) == 2 and all(g["label"] in KINDS4 for g in got)
    assert all(set(g["scores"]) == KINDS4 and all(s["n"] == 1 for s in g["scores"].values()) for g in got)
    assert all(g["reasoners"] == ["tiny_policy"] for g in got)
    assert [len(a) for a in asked] == [8]                          # 2 records x 4 kinds in one batch

    asked.clear()
    assert run(data, out, tiny_checkpoint, 3) == 0                 # resume: only the third record
    assert [sorted({i for i, _ in a}) for a in asked] == [["train_00002"]]
    assert out.read_text().splitlines()[:2] == first

    with out.open("a") as f:                                       # a crash mid-line
        f.write('{"id": "train_00003", "label": "da')
    asked.clear()
    assert run(data, out, tiny_checkpoint, 4) == 0
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == ["train_00000", "train_00001", "train_00002", "train_00003"]
    assert [len(a) for a in asked] == [4]


def test_checkpoint_reasoner_decodes_the_prompted_policy_input_greedily(synthetic, tiny_checkpoint):
    _, data, _ = synthetic
    cfg = Data(max_pixels=9408)
    rec = JsonlReader(str(data), shuffle=False).records[1]
    reasoner = CheckpointReasoner(Model(path=tiny_checkpoint), cfg, max_new_tokens=3, batch_size=2)
    jobs = [ProxyJob(rec, k, decode_frames(rec, cfg)) for k in ("darken", "raw", "darken")]
    replies = reasoner.answer(jobs)
    assert replies[0].text == replies[2].text                      # greedy: the same input, the same answer
    assert replies[0].frame_size == (112, 84)
    # The same ids by hand: the prompted sample's greedy continuation, argmax step by step.
    sample = load_prompt(rec, cfg, load_tokenizer(""), visual_prompt="darken")
    ids = torch.tensor([sample.prompt_ids])
    with torch.no_grad():
        for _ in range(3):
            pos = mrope_position_ids(reasoner.model, ids, torch.ones_like(ids), sample.grid_thw)
            logits = reasoner.model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=pos,
                                    pixel_values=sample.pixel_values, image_grid_thw=sample.grid_thw).logits
            nxt = int(logits[0, -1].argmax())
            if nxt in EOS_IDS:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    expected = reasoner.tok.decode(ids[0, len(sample.prompt_ids):].tolist())
    assert replies[0].text == expected and len(ids[0]) > len(sample.prompt_ids)
