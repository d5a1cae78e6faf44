"""The tiny model's vocabulary subset: lossless text <-> rows, the ids the data needs, the model's
special-token rows, bad subsets rejected, and a run's subset guarded across resumes."""
import json

import pytest
import torch

from visd_core.config import Model as ModelCfg
from visd_core.data.reader import JsonlReader
from visd_core.data.schema import parse_record
from visd_core.model.build import build_unsharded
from visd_core.tokenizer import SPECIAL_TOKENS, load_tokenizer
from visd_core.vocab_subset import (FILE_NAME, SubsetTokenizer, byte_token_ids, check_run_subset, ids_from_records,
                                    main, model_tokenizer, record_texts, with_folder_subset)

RECORD = {"id": "r1", "task": "temporal_qa", "question": "When does the red circle move?", "options": [],
          "answer": "From <t>1.0</t>s to <t>2.4</t>s", "video_path": "v.mp4", "window": [1.0, 2.4],
          "reasoning_process": "<think>The red circle moves right: <obj>red circle</obj><box>[1,2,30,40]</box>"
                               "at<t>1.2</t>s.</think><answer>From <t>1.0</t>s to <t>2.4</t>s</answer>"}


@pytest.fixture(scope="module")
def base():
    return load_tokenizer("")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("vs") / "train.jsonl"
    path.write_text(json.dumps(RECORD) + "\n" + "not json\n" + json.dumps({"id": "x"}) + "\n")
    (path.parent / "v.mp4").write_bytes(b"")     # the reader checks only that the video exists
    return path


@pytest.fixture(scope="module")
def records(data):
    records = JsonlReader(str(data), shuffle=False).records
    assert [r.id for r in records] == ["r1"]       # the reader leaves the two broken lines out
    return records


@pytest.fixture(scope="module")
def tok(base, records):
    return SubsetTokenizer(base, ids_from_records(records, base))


def test_data_ids_cover_every_text_of_the_record_and_keep_specials_and_bytes(base, tok):
    ids = set(tok.ids)
    assert set(SPECIAL_TOKENS.values()) <= ids and set(byte_token_ids(base)) <= ids
    for text in record_texts(parse_record(RECORD)):
        assert set(base.encode(text, allow_special=True)) <= ids
    assert 278 < len(tok.ids) < 600         # 22 special + 256 byte tokens + this record's words
    before = tok.spelled
    rows = tok.encode(RECORD["reasoning_process"])
    assert tok.spelled == before            # nothing of the data needs spelling out
    assert rows == [tok.ids.index(i) for i in base.encode(RECORD["reasoning_process"])]


@pytest.mark.parametrize("text", ["The red circle moves right.", "A purple hexagon jumps over 12 crates!",
                                  "Ünïcödé 世界 🙂 tabs\tand\nnewlines", "", "<|im_end|> as plain text"])
def test_any_text_round_trips_through_rows(tok, text):
    rows = tok.encode(text)
    assert all(0 <= r < tok.vocab_size for r in rows)
    assert tok.decode(rows) == text
    assert "".join(tok.decode_pieces(rows)) == text


def test_unknown_words_are_spelled_in_bytes_and_counted(base, tok):
    before = tok.spelled
    rows = tok.encode(" hexagon")          # not in the record
    assert tok.spelled > before
    assert len(rows) == len(" hexagon".encode())
    assert tok.to_token_ids(rows) == [base.encoding.encode_single_token(bytes([b])) for b in b" hexagon"]


def test_special_tokens_are_rows_of_the_subset(base, tok):
    chat = tok.encode_chat([{"role": "user", "content": "<|vision_start|><|image_pad|><|vision_end|>hi"}],
                           add_generation_prompt=True)
    assert tok.image_pad in chat and tok.vision_start in chat and tok.im_start in chat
    assert tok.decode([tok.image_pad, tok.im_end]) == "<|image_pad|><|im_end|>"
    assert tok.eos_ids == (tok.im_end, tok.endoftext) and tok.pad_id == tok.endoftext
    assert max(tok.eos_ids) < tok.vocab_size
    with pytest.raises(ValueError, match="outside"):
        tok.decode([tok.vocab_size])


def test_the_tiny_model_on_a_subset_has_its_rows_and_special_ids(tok):
    m = ModelCfg(hidden_size=32, num_heads=2, num_kv_heads=1, intermediate_size=64, tie_embeddings=True)
    model = build_unsharded(m, tok=tok)
    assert model.get_input_embeddings().weight.shape == (tok.vocab_size, 32)
    assert model.lm_head.weight.shape == (tok.vocab_size, 32)
    c = model.config
    assert (c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id) == \
        (tok.image_pad, tok.video_pad, tok.vision_start, tok.vision_end)
    assert c.text_config.eos_token_id == tok.im_end
    full = build_unsharded(m)              # without a subset: the real rows and ids
    assert full.get_input_embeddings().weight.shape[0] == 151936 and full.config.image_token_id == 151655


@pytest.mark.parametrize("ids,needle", [("nope", "list of integer"), ([1, 1], "distinct"),
                                        ([10 ** 6], "distinct and in"), ([151643], "lacks")])
def test_bad_subsets_are_rejected(base, tmp_path, ids, needle):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(ids))
    with pytest.raises(ValueError, match=needle):
        model_tokenizer(ModelCfg(vocab_subset=str(path)))


def test_model_tokenizer_specs(base, data, records, tmp_path):
    assert model_tokenizer(ModelCfg(), records) is base
    tok = model_tokenizer(ModelCfg(vocab_subset="data"), records)
    assert isinstance(tok, SubsetTokenizer)
    main(["--data", str(data), "--out", str(tmp_path / "ids.json")])     # the CLI writes the same subset
    assert json.loads((tmp_path / "ids.json").read_text()) == tok.ids
    assert model_tokenizer(ModelCfg(vocab_subset=str(tmp_path / "ids.json"))).ids == tok.ids
    with pytest.raises(ValueError, match="needs the training records"):
        model_tokenizer(ModelCfg(vocab_subset="data"), [])
    # a checkpoint at model.path brings its own rows: its vocab_subset.json, or the full vocabulary
    ckpt = tmp_path / "export"
    ckpt.mkdir()
    assert model_tokenizer(ModelCfg(path=str(ckpt), vocab_subset="data"), records) is base
    (ckpt / FILE_NAME).write_text(json.dumps(tok.ids))
    assert model_tokenizer(ModelCfg(path=str(ckpt))).ids == tok.ids
    assert with_folder_subset(base, tmp_path) is base


def test_a_run_keeps_its_subset(base, tok, tmp_path):
    check_run_subset(tok, tmp_path, resuming=False, is_main=True)
    assert json.loads((tmp_path / FILE_NAME).read_text()) == tok.ids
    check_run_subset(tok, tmp_path, resuming=True, is_main=True)          # same rows: fine
    other = SubsetTokenizer(base, sorted(set(tok.ids) | {base.encode(" hexagon")[0]}))
    with pytest.raises(ValueError, match="subset"):
        check_run_subset(other, tmp_path, resuming=True, is_main=True)
    with pytest.raises(ValueError, match="full vocabulary"):
        check_run_subset(base, tmp_path, resuming=True, is_main=True)
    check_run_subset(base, tmp_path, resuming=False, is_main=True)        # a fresh full-vocab run in the folder
    assert not (tmp_path / FILE_NAME).exists()


def test_logits_index_rows(tok):
    """The model's logits are over the subset's rows: a sampled row decodes through the subset."""
    m = ModelCfg(hidden_size=32, num_heads=2, num_kv_heads=1, intermediate_size=64, tie_embeddings=True)
    model = build_unsharded(m, tok=tok)
    ids = torch.tensor([tok.encode("The red circle")])
    logits = model(input_ids=ids).logits
    assert logits.shape[-1] == tok.vocab_size
    tok.decode(logits[0].argmax(-1).tolist())      # every row decodes
