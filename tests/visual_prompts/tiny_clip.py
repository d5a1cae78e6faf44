"""A tiny random CLIP saved the way a real one is (config + weights + tokenizer + preprocessor
config), so tests load it through ClipRelevance.from_pretrained, offline.

The tokenizer is a real CLIPTokenizer (byte-level BPE, transformers' tokenizers backend) over a
vocabulary of single characters: every lowercase letter, digit and punctuation mark, alone and as
a word end ("a</w>"), with no merges; it tokenizes any English question character by character.
"""
import string

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

IMAGE_SIZE, PATCH = 48, 8       # a 6x6 patch grid


def save_tiny_clip(path: str, seed: int = 0) -> str:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + string.punctuation:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=PATCH),
        projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                       crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(path)
    return path
