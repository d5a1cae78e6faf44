"""The selector trains on labels (loss drops, LoRA only), its directory loads back frozen, and
predict returns kinds: the held-out accuracy of training is what from_dir's predictions give."""
import json

import pytest

from visd_core.config import Data, Model
from visd_core.data.model_inputs import decode_frames
from visd_core.data.reader import JsonlReader
from visd_core.selector import VPSelector
from visd_core.selector.__main__ import main
from visd_core.selector.lora import lora_layers
from visd_core.selector.model import SHEET_GAP, contact_sheet, selector_sample, to_kind
from visd_core.selector.train import majority, read_labels, split, train_selector
from visd_core.tokenizer import load_tokenizer
from visd_core.visual_prompts import KINDS, key_frame_boxes

BY_TASK = {"temporal_qa": "numpro", "temporal_mcq": "numpro", "visual_qa": "circle", "st_freeform": "darken",
           "video_mcq": "raw", "video_freeform": "darken"}
DATA = Data(max_pixels=9408)
SHEET = 6272            # 8 visual tokens for the whole sheet: a fast test


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    _, data, records = synthetic
    labels = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": i, "label": BY_TASK[r["task"]]}) + "\n" for i, r in records.items()))
    out = tmp_path_factory.mktemp("selector") / "sel"
    logged = []
    meta = train_selector(JsonlReader(str(data), shuffle=False).records, read_labels(labels), out, base=Model(),
                          data_cfg=DATA, epochs=4, lr=1e-2, batch_size=4, val_frac=0.25, seed=0,
                          sheet_max_pixels=SHEET, log=logged.append)
    return out, meta, logged, data


def test_training_lowers_the_label_loss(trained):
    _, meta, logged, _ = trained
    losses = [h["train_loss"] for h in meta["history"]]
    assert losses[-1] < losses[0] - 0.5, losses
    assert meta["n_train"] == 6 and meta["n_val"] == 2
    assert sum(meta["label_counts"].values()) == 6
    assert any("held-out accuracy" in line and "majority" in line for line in logged)


def test_from_dir_predicts_kinds_as_training_measured_them(trained):
    out, meta, _, data = trained
    assert {p.name for p in out.iterdir()} == {"adapter.safetensors", "selector.json"}
    selector = VPSelector.from_dir(out)
    assert not selector.model.training and not any(p.requires_grad for p in selector.model.parameters())
    assert lora_layers(selector.model)
    records = JsonlReader(str(data), shuffle=False).records
    kinds = selector.predict(records)
    assert len(kinds) == len(records) and set(kinds) <= set(KINDS)
    val = [r for r in records if r.id in meta["val_ids"]]
    acc = sum(k == BY_TASK[r.task] for k, r in zip(selector.predict(val), val)) / len(val)
    assert acc == meta["val_accuracy"]
    videos = [decode_frames(r, DATA) for r in val]                  # frames decoded by the caller
    assert selector.predict(val, videos) == selector.predict(val)


def test_predict_cli(trained, capsys):
    out, _, _, data = trained
    assert main(["predict", "--model", str(out), "--data", str(data), "--id", "train_00003"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["id"] == "train_00003" and line["kind"] in KINDS
    assert main(["predict", "--model", str(out), "--data", str(data), "--id", "nope"]) == 2


def test_output_that_names_no_kind_becomes_raw_and_is_counted(synthetic, tmp_path):
    _, data, _ = synthetic
    records = JsonlReader(str(data), shuffle=False).records[:3]
    out = tmp_path / "untrained"
    labels = {r.id: "darken" for r in records}
    # lr so small the random tiny model is unchanged: it answers noise, not a kind.
    train_selector(records, labels, out, base=Model(), data_cfg=DATA, epochs=1, lr=1e-12, batch_size=4,
                   val_frac=0.0, sheet_max_pixels=SHEET, log=lambda _: None)
    selector = VPSelector.from_dir(out)
    assert selector.predict(records) == ["raw"] * 3 and selector.unmapped == 3


def test_to_kind():
    assert [to_kind(t) for t in ("darken", " Circle.", "`numpro`", "raw\n", "api_prompt", "dark", "")] == \
        ["darken", "circle", "numpro", "raw", "api_prompt", None, None]


def test_contact_sheet_tiles_the_key_frames_in_time_order(synthetic):
    _, data, _ = synthetic
    rec = next(r for r in JsonlReader(str(data), shuffle=False).records if len(r.key_frames) == 2)
    video = decode_frames(rec, DATA)
    keys = list(key_frame_boxes(video.times, rec))
    assert len(keys) == 2 and keys[0] < keys[1]
    h, w = video.frames.shape[1:3]
    sheet = contact_sheet(video, rec)
    assert sheet.shape == (h, 2 * w + SHEET_GAP, 3)                # two tiles side by side, a black gap
    assert (sheet[:, :w] == video.frames[keys[0]]).all() and (sheet[:, w + SHEET_GAP:] == video.frames[keys[1]]).all()
    assert (sheet[:, w:w + SHEET_GAP] == 0).all()
    tok = load_tokenizer("")
    sample = selector_sample(rec, video, tok, SHEET)
    assert sample.grid_thw.shape == (1, 3)                          # ONE image
    text = tok.decode(sample.prompt_ids)
    assert rec.question.strip() in text and "Key objects:" in text and "Answer with the method name only." in text


def test_split_and_majority():
    tr, va = split(10, 0.2, 0)
    assert len(va) == 2 and sorted(tr + va) == list(range(10)) and split(10, 0.2, 0) == (tr, va)
    assert split(3, 0.2, 0)[1] and split(5, 0.0, 0)[1] == []
    assert majority(["circle", "darken", "darken", "circle"]) == "circle"      # tie: KINDS order
    assert majority(["circle", "raw"]) == "raw" and majority(["numpro", "numpro", "raw"]) == "numpro"
