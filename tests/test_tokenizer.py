"""Tokenizer: bundled ranks, special tokens, chat template, and parity with Hugging Face `tokenizers`."""
import json
import pickle
import random
import shutil
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import visd_core.tokenizer as T
from visd_core.data.schema import Record
from visd_core.prompt import build_chat
from visd_core.tokenizer import N_RANKS, SPECIAL_TOKENS, build_tokenizer, load_tokenizer, render_chat


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("")


# ---------------------------------------------------------------------------------------------
# A varied corpus: hand-picked cases plus seeded random joins of fragments from many scripts.

HAND = [
    "", " ", "\n", "\r\n", "\t", "   leading", "trailing   ", "a  b   c    d", "line\n\n\nbreaks\n",
    "Hello, world!", "don't I'LL she's WE'VE they'd", "3.14159 2024 1,000,000 -42 0x1F 1e-9",
    "def f(x):\n    return x ** 2  # square\n", "if (a && b) { return {\"k\": [1, 2]}; }", "\t\tindented\n\t}",
    "视频理解需要时间推理。", "東京タワーは333メートルです", "한국어 텍스트", "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Привет, мир!", "Γειά σου Κόσμε",
    "😀👍🏽👨‍👩‍👧🇺🇸", "café naïve résumé", "cafe\u0301 nai\u0308ve",
    "<think>The <obj>red circle</obj><box>[12,40,96,120]</box>at<t>3.2</t>s moves.</think><answer>B</answer>",
    "From <t>1.5</t>s to <t>4.0</t>s.\nCorrect Option: C", "<|im_start|> <|fake|> <|image_pad",
    "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>\n<|im_end|>",
    "!!!???...---___", "«quotes» “curly” ‘single’ — – …", "∑∫√∞≠≤≥ ±×÷", "   \n   \n", "x" * 300,
]
FRAGMENTS = [
    "the", " quick", " brown", "Fox", " jumps", "OVER", " 123", "4567", " 3.5", "%", "$", "@user", "#tag",
    "\n", "\n\n", "  ", "\t", " \n", "\r\n", ".", ",", "?!", "...", "'s", "'re", "(", ")", "[", "]", "{", "}",
    "视频", "帧", "东京", "한국", "مرحبا", "עולם", "नमस्ते", "ไทย", "мир", "κόσμε", "😀", "🇯🇵", "👩‍💻",
    "é", "e\u0301", "ß", "ﬁ", "Å", "<obj>", "</obj>", "<box>[1,2,3,4]</box>", "at<t>2.5</t>s", "::", "->",
    "==", "/*", "*/", "//", "\\n", "0", "00", "000", "<|im_start|>", "<|image_pad|>", "<|im_end|>\n",
]


def corpus() -> list[str]:
    rng = random.Random(0)
    joined = ["".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 14))) for _ in range(500)]
    return HAND + joined


# ---------------------------------------------------------------------------------------------
# The Hugging Face reference, built from the same ranks.

def _byte_to_unicode() -> dict[int, str]:
    return {b: c for c, b in T._unicode_to_byte().items()}


def _ranks() -> dict[bytes, int]:
    return T._read_tiktoken(T._bundled_vocab(), T.BUNDLED_SHA256)


def _merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every split (a, b) of a token whose halves are tokens, ordered by the rank of a+b: HF's
    merge order then equals tiktoken's lowest-rank-first rule."""
    merges = []
    for token, rank in ranks.items():
        splits = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        splits.sort(key=lambda ab: (ranks[ab[0]], ranks[ab[1]]))
        merges += [(rank, a, b) for a, b in splits]
    merges.sort(key=lambda m: m[0])
    return [(a, b) for _, a, b in merges]


@pytest.fixture(scope="module")
def vocab_merges():
    """The bundled ranks as an HF byte-level vocabulary (unicode strings -> ids) and merge list."""
    ranks = _ranks()
    b2u = _byte_to_unicode()
    u = lambda bs: "".join(b2u[b] for b in bs)      # noqa: E731
    return {u(t): r for t, r in ranks.items()}, [(u(a), u(b)) for a, b in _merges_from_ranks(ranks)]


@pytest.fixture(scope="module")
def hf_files(vocab_merges, tmp_path_factory):
    """An HF `tokenizers` Qwen2-style Tokenizer over the same ranks, and both HF dir layouts on disk."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX   # independent of ours

    vocab, merges = vocab_merges
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))   # pure merge semantics
    hf.normalizer = normalizers.NFC()
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])

    root = tmp_path_factory.mktemp("hf")
    (root / "slow").mkdir()
    (root / "slow" / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (root / "slow" / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                              encoding="utf-8")
    (root / "slow" / "added_tokens.json").write_text(json.dumps(SPECIAL_TOKENS), encoding="utf-8")
    (root / "fast").mkdir()
    hf.save(str(root / "fast" / "tokenizer.json"))
    return hf, root


def test_hf_reference_assigns_the_real_special_ids(hf_files):
    hf, _ = hf_files
    assert {t: hf.token_to_id(t) for t in SPECIAL_TOKENS} == SPECIAL_TOKENS


@pytest.mark.parametrize("allow_special", [False, True])
def test_ids_equal_hf_tokenizers_on_varied_corpus(tok, hf_files, allow_special):
    hf, _ = hf_files
    texts = corpus()
    assert len(texts) >= 500
    got = [tok.encode(t, allow_special=allow_special) for t in texts]
    hf.encode_special_tokens = not allow_special     # HF's switch for "special strings are plain text"
    try:
        want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    finally:
        hf.encode_special_tokens = False
    mismatches = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
    assert not mismatches, mismatches[:3]


def test_ids_equal_transformers_qwen2_tokenizer(tok, vocab_merges):
    """The class Qwen2.5-VL's processor uses, built from the same vocabulary and merges."""
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = vocab_merges
    qwen2 = Qwen2Tokenizer(vocab=vocab, merges=merges)       # adds <|endoftext|> as 151643
    qwen2.add_special_tokens({"additional_special_tokens": [t for t in SPECIAL_TOKENS if t != "<|endoftext|>"]})
    assert {t: qwen2.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS} == SPECIAL_TOKENS
    texts = corpus()
    want = [qwen2(t, add_special_tokens=False)["input_ids"] for t in texts]
    mismatches = [(t, w) for t, w in zip(texts, want) if tok.encode(t, allow_special=True) != w]
    assert not mismatches, mismatches[:3]


def test_chat_with_frames_equals_hf_with_special_tokens(tok, hf_files):
    hf, _ = hf_files
    record = Record(id="r", task="temporal_mcq", question="When does the red circle stop?",
                    answer="B", video_path="v.mp4", options=["A. at once", "B. after 2 s"], window=(1.0, 2.0))
    msgs = build_chat(record, [0.0, 1.25, 2.5], [4, 4, 4], 3.4)
    text = render_chat(msgs, add_generation_prompt=True)
    assert tok.encode_chat(msgs, add_generation_prompt=True) == hf.encode(text, add_special_tokens=False).ids


# ---------------------------------------------------------------------------------------------
# Loading

def test_bundled_layout_and_known_ids(tok):
    assert (tok.vocab_size, tok.model_vocab_size, tok.encoding.n_vocab) == (151_665, 151_936, 151_665)
    # Ids of Qwen2's standard chat prefix, as Hugging Face's Qwen2 tokenizer gives them.
    assert tok.encode("You are a helpful assistant.") == [2610, 525, 264, 10950, 17847, 13]
    assert tok.encode("hello world") == [14990, 1879]
    assert tok.encode("12345") == [16, 17, 18, 19, 20]      # Qwen2 splits every digit
    assert tok.eos_ids == (151645, 151643) and tok.pad_id == 151643
    attrs = {"endoftext": 151643, "im_start": 151644, "im_end": 151645, "object_ref_start": 151646,
             "object_ref_end": 151647, "box_start": 151648, "box_end": 151649, "quad_start": 151650,
             "quad_end": 151651, "vision_start": 151652, "vision_end": 151653, "vision_pad": 151654,
             "image_pad": 151655, "video_pad": 151656}
    assert {a: getattr(tok, a) for a in attrs} == attrs


def test_load_is_cached_and_pickles_by_spec(tok):
    assert load_tokenizer("") is tok
    assert pickle.loads(pickle.dumps(tok)) is tok


def test_tiktoken_file_and_hf_dirs_give_the_same_ids(tok, hf_files, tmp_path):
    _, root = hf_files
    copy = tmp_path / "qwen.tiktoken"
    shutil.copyfile(str(T._bundled_vocab()), copy)
    texts = corpus()[:200]
    want = [tok.encode(t, allow_special=True) for t in texts]
    for spec in (copy, root / "slow", root / "fast"):
        other = build_tokenizer(str(spec))
        assert [other.encode(t, allow_special=True) for t in texts] == want, spec
        assert other.encode("<|video_pad|>", allow_special=True) == [151656]


def test_corrupted_bundled_vocabulary_fails_loudly(tmp_path, monkeypatch):
    bad = tmp_path / "qwen.tiktoken"
    data = bytearray(T._bundled_vocab().read_bytes())
    data[100] ^= 1
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(T, "_bundled_vocab", lambda: bad)
    with pytest.raises(ValueError, match="sha256 .* expected b2b1b8df"):
        build_tokenizer("")


def _one_line_error(spec: str, match: str):
    with pytest.raises(ValueError, match=match) as e:
        build_tokenizer(spec)
    assert "\n" not in str(e.value)


def test_bad_specs_are_one_line_value_errors(tmp_path, hf_files):
    _, root = hf_files
    _one_line_error(str(tmp_path / "nope"), "does not exist")
    _one_line_error(str(tmp_path), "needs tokenizer.json, or vocab.json and merges.txt")
    (tmp_path / "vocab.txt").write_text("x")
    _one_line_error(str(tmp_path / "vocab.txt"), r"expected '' \(bundled")

    lines = T._bundled_vocab().read_bytes().splitlines()
    (tmp_path / "short.tiktoken").write_bytes(b"\n".join(lines[:-1]))
    _one_line_error(str(tmp_path / "short.tiktoken"), "expected the Qwen2 layout of 151,643")
    (tmp_path / "garbage.tiktoken").write_bytes(b"IQ== zero\n")
    _one_line_error(str(tmp_path / "garbage.tiktoken"), "not a tiktoken file")

    swapped = tmp_path / "swapped"     # merges out of id order: cannot be tiktoken ranks
    shutil.copytree(root / "slow", swapped)
    merges = (swapped / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges[1], merges[-1] = merges[-1], merges[1]
    (swapped / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    _one_line_error(str(swapped), "not in merge order")

    wrong_id = tmp_path / "wrong_id"
    shutil.copytree(root / "slow", wrong_id)
    (wrong_id / "added_tokens.json").write_text(json.dumps({"<|im_start|>": 151700}))
    _one_line_error(str(wrong_id), r"<\|im_start\|> has id 151700, Qwen2.5-VL uses 151644")


def test_hf_dir_with_another_pre_tokenizer_is_rejected(tmp_path):
    split = {"type": "Split", "pattern": {"Regex": r"\p{N}{1,3}|\s+"}, "behavior": "Isolated", "invert": False}
    tj = {"model": {"type": "BPE", "vocab": {}, "merges": []},
          "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, {"type": "ByteLevel"}]}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    _one_line_error(str(tmp_path), "is not Qwen2's")


def test_hf_dir_extra_added_tokens_warn_and_load(hf_files, tmp_path):
    _, root = hf_files
    shutil.copytree(root / "slow", tmp_path / "extra")
    (tmp_path / "extra" / "added_tokens.json").write_text(json.dumps({**SPECIAL_TOKENS, "<think>": 151667}))
    with pytest.warns(UserWarning, match=r"ignoring 1 added token\(s\) outside Qwen2.5-VL's set: \['<think>'\]"):
        other = build_tokenizer(str(tmp_path / "extra"))
    assert other.encode("<think>", allow_special=True) == load_tokenizer("").encode("<think>")


# ---------------------------------------------------------------------------------------------
# Encode / decode

@pytest.mark.parametrize("text", HAND)
def test_round_trip_mixed_script(tok, text):
    assert tok.decode(tok.encode(text)) == unicodedata.normalize("NFC", text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_round_trip_any_text(text):
    tok = load_tokenizer("")
    ids = tok.encode(text)
    assert all(0 <= i < N_RANKS for i in ids)        # ordinary text never yields a special id
    assert tok.decode(ids) == unicodedata.normalize("NFC", text)


def test_nfc_normalization_matches_composed_form(tok):
    assert tok.encode("cafe\u0301") == tok.encode("café")


def test_special_tokens_never_split_and_never_implicit(tok):
    every = "".join(f"x{t}" for t in SPECIAL_TOKENS)
    plain = tok.encode(every)
    assert all(i < N_RANKS for i in plain) and tok.decode(plain) == every
    assert tok.encode("<|im_start|>") != [151644] and tok.encode("<|im_start|>", allow_special=True) == [151644]
    ids = tok.encode(every, allow_special=True)
    for text, tid in SPECIAL_TOKENS.items():
        assert ids.count(tid) == 1, text
    assert sum(i >= N_RANKS for i in ids) == len(SPECIAL_TOKENS)
    assert tok.decode(ids) == every


def test_decode_drops_padding_rows_and_rejects_negative_ids(tok):
    ids = tok.encode("hi")
    assert tok.decode(ids + [151_665, 151_935, 152_063]) == "hi"     # 3B and 7B padding rows
    with pytest.raises(ValueError, match="negative token id -1"):
        tok.decode([5, -1])


# ---------------------------------------------------------------------------------------------
# Chat template

def test_chat_template_text_and_ids(tok):
    msgs = [{"role": "user", "content": "Hi <|vision_start|><|image_pad|><|vision_end|>"},
            {"role": "assistant", "content": "Hello."}]
    text = render_chat(msgs, add_generation_prompt=False)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nHi <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
                    "<|im_start|>assistant\nHello.<|im_end|>\n")
    ids = tok.encode_chat(msgs)
    assert ids[:11] == [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198]
    assert ids.count(151644) == ids.count(151645) == 3
    for special in (151652, 151655, 151653):
        assert ids.count(special) == 1
    gen = tok.encode_chat([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
                          add_generation_prompt=True)
    assert tok.decode(gen) == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    assert gen[-3:] == [151644, 77091, 198]


@pytest.mark.parametrize("msgs, match", [
    ([], "at least one message"),
    ([{"role": "tool", "content": "x"}], "unknown chat role 'tool'"),
    ([{"role": "user", "content": "a<|im_end|>b"}], r"turn token <\|im_end\|>"),
    ([{"role": "user", "content": ["x"]}], "must be a string"),
])
def test_chat_template_rejects(msgs, match):
    with pytest.raises(ValueError, match=match):
        render_chat(msgs)
