"""Export: transformers loads the directory offline, computes our logits, generates; the tokenizer
files tokenize like visd_core.tokenizer; our own loader reads the export back."""
import json

import pytest
import torch
from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

from tiny_batch import collate, tiny_sequences
from visd_core.config import Model
from visd_core.model import build_model, build_unsharded, completion_logits
from visd_core.model.export import export_hf
from visd_core.model.policy import IMAGE_TOKEN_ID, IM_END_ID
from visd_core.tokenizer import load_tokenizer, render_chat


@pytest.fixture(scope="module")
def exported(tmp_path_factory, world1):
    model = build_model(Model(), world1, seed=4)
    with torch.no_grad():      # move off the init so a load from the wrong source would show
        for p in model.parameters():
            p.to_local().add_(0.01 * torch.randn_like(p.to_local()))
    out = export_hf(model, tmp_path_factory.mktemp("export") / "policy", world1, dtype=torch.float32,
                    max_shard_bytes=30 * 2**20)      # small shards: exercise the index too
    return model, out


def test_export_layout(exported):
    _, out = exported
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "preprocessor_config.json", "model.safetensors.index.json",
            "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"} <= names
    assert len([n for n in names if n.endswith(".safetensors")]) > 1
    assert not out.with_name(out.name + ".tmp").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2_5_VLForConditionalGeneration"] and "text_config" not in cfg
    assert cfg["rope_scaling"]["type"] == "mrope" and cfg["vocab_size"] == 151936
    weights = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert "visual.patch_embed.proj.weight" in weights and "model.embed_tokens.weight" in weights


def test_transformers_loads_and_generates(exported):
    model, out = exported
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(out, local_files_only=True)
    batch = collate(tiny_sequences(2, seed=9))
    mm_types = (batch.input_ids == IMAGE_TOKEN_ID).int()
    with torch.no_grad():
        ours = completion_logits(model, batch).logits
        full = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=batch.pixel_values,
                  image_grid_thw=batch.image_grid_thw, mm_token_type_ids=mm_types).logits
    torch.testing.assert_close(full[:, :-1][batch.completion_mask[:, 1:]], ours, rtol=1e-5, atol=1e-5)

    one = collate(tiny_sequences(1, seed=9))
    gen = hf.generate(input_ids=one.input_ids, attention_mask=one.attention_mask, pixel_values=one.pixel_values,
                      image_grid_thw=one.image_grid_thw, mm_token_type_ids=(one.input_ids == IMAGE_TOKEN_ID).int(),
                      max_new_tokens=5, do_sample=False)
    assert gen.shape[1] > one.input_ids.shape[1] and torch.equal(gen[:, :one.input_ids.shape[1]], one.input_ids)
    assert hf.generation_config.eos_token_id == [IM_END_ID, 151643]
    assert AutoImageProcessor.from_pretrained(out, local_files_only=True).patch_size == 14


def test_tokenizer_files_match_ours(exported):
    _, out = exported
    hf_tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ours = load_tokenizer("")
    text = "Frame 1 at 0.5s: <obj>red circle</obj><box>[12,34,56,78]</box> at <t>3.5</t>s — 世界!\n\n  ok"
    assert hf_tok.encode(text, add_special_tokens=False) == ours.encode(text)
    assert hf_tok.convert_tokens_to_ids(["<|im_end|>", "<|image_pad|>"]) == [IM_END_ID, IMAGE_TOKEN_ID]
    msgs = [{"role": "user", "content": "What moves first?"}]
    assert hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == render_chat(msgs, True)
    assert load_tokenizer(str(out)).encode(text) == ours.encode(text)     # our loader reads it back too


def test_export_reloads_through_our_loader(exported):
    model, out = exported
    back = build_unsharded(Model(path=str(out)))
    for (n, p), (_, q) in zip(model.named_parameters(), back.named_parameters(), strict=True):
        assert torch.equal(p.full_tensor(), q), n
