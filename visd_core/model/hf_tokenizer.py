"""Hugging Face tokenizer files for an exported model, written from our tiktoken ranks.

vocab.json + merges.txt (the byte-level BPE, as Qwen ships it), tokenizer.json (the same plus NFC,
Qwen2's split regex and the special tokens at their real ids), tokenizer_config.json (Qwen2.5-VL's
chat template, eos / pad). The merges are recovered from the ranks the way tiktoken applies them:
each token of rank r is the unique pair that BPE, using only ranks < r, merges last.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

from visd_core.tokenizer import QWEN2_PAT, SPECIAL_TOKENS, QwenTokenizer

# Qwen2.5-VL's chat template (tokenizer_config.json of the released Instruct models).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@functools.cache
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: the printable character standing for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + i) for i, b in enumerate(b for b in range(256) if b not in printable)})
    return table


def _as_text(token: bytes) -> str:
    table = _byte_to_unicode()
    return "".join(table[b] for b in token)


def _merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    get = ranks.get
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        n = len(token)
        if n == 1:
            continue
        splits = [i for i in range(1, n) if token[:i] in ranks and token[i:] in ranks]
        if len(splits) == 1:     # one way to build it from two tokens: no replay needed (~40% of them)
            merges.append((token[:splits[0]], token[splits[0]:]))
            continue
        parts = [token[i:i + 1] for i in range(n)]
        while len(parts) > 2:    # replay BPE with the ranks below this token's own
            best, at = rank, -1
            for i in range(len(parts) - 1):
                r = get(parts[i] + parts[i + 1], rank)
                if r < best:
                    best, at = r, i
            if at < 0:
                raise ValueError(f"token of rank {rank} is not reachable by BPE merges of lower ranks")
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        merges.append((parts[0], parts[1]))
    return merges


def write_tokenizer_files(tok: QwenTokenizer, out_dir: str | Path) -> None:
    out = Path(out_dir)
    enc = tok.encoding
    ranks = {b: enc.encode_single_token(b) for b in enc.token_byte_values()}
    vocab = {_as_text(b): r for b, r in ranks.items()}
    merges = [(_as_text(a), _as_text(b)) for a, b in _merges(ranks)]
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))

    fast = Tokenizer(BPE(vocab, merges, fuse_unk=False))
    fast.normalizer = normalizers.NFC()
    fast.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    fast.decoder = decoders.ByteLevel()
    fast.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = sorted(SPECIAL_TOKENS.items(), key=lambda kv: kv[1])
    fast.add_special_tokens([AddedToken(t, normalized=False, special=True) for t, _ in specials])
    wrong = [(t, i, fast.token_to_id(t)) for t, i in specials if fast.token_to_id(t) != i]
    if wrong:
        raise ValueError(f"special token {wrong[0][0]} got id {wrong[0][2]}, Qwen2.5-VL uses {wrong[0][1]}")
    fast.save(str(out / "tokenizer.json"))

    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "chat_template": CHAT_TEMPLATE,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None, "unk_token": None,
        "errors": "replace", "add_prefix_space": False, "clean_up_tokenization_spaces": False,
        "split_special_tokens": False, "model_max_length": 131072,
        "added_tokens_decoder": {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True} for t, i in specials},
    }, indent=2, ensure_ascii=False))
