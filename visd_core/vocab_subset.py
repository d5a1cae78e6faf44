"""A vocabulary subset for the tiny model built from scratch: embedding rows only for the ids its data uses.

    [model] vocab_subset = "data"     # the ids of data.train_path (the tiny default)
    [model] vocab_subset = "F.json"   # a JSON list of tokenizer ids, row i of the model = id ids[i]
    [model] vocab_subset = ""         # the real 151,936-row vocabulary
    (model.path set: the checkpoint's own rows, its vocab_subset.json if it has one)
    python -m visd_core.vocab_subset --data A.jsonl [B.jsonl ...] --out F.json

Why: the tiny default's tied 151,936 x 128 embedding holds 19.4M of its 19.8M parameters, and its
lm_head is nearly all of a step's FLOPs. One fwd+bwd+AdamW step of its language model on a
370-token sequence (1 thread, every position's logits): 1.23 s with 151,936 rows, 0.044 s with
4,096 (measured). The synthetic training data needs 528 rows.

The model is a plain Qwen2.5-VL whose vocabulary is the subset: its config's special-token ids
(image_pad, vision_start, ...) are the subset's rows, so everything downstream — rollouts, log-probs,
the teacher's top-K, the kernels — runs on model rows without knowing. Only this tokenizer maps.
Text -> ids: the Qwen tokenizer's ids, each mapped to its row; an id outside the subset is spelled
as its bytes' single-byte tokens (all 256 are in every subset), so nothing is lost:
decode(encode(s)) == s for every string. Ids -> text: rows back to tokenizer ids, then Qwen's decode.
Real checkpoints keep their own rows: a subset with model.path set is a config error.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from visd_core.data.reader import JsonlReader
from visd_core.tokenizer import N_RANKS, SPECIAL_TOKENS, VOCAB_SIZE, QwenTokenizer, load_tokenizer, render_chat

log = logging.getLogger(__name__)

FILE_NAME = "vocab_subset.json"     # in a run folder and in an export: the rows the weights index
# QwenTokenizer's special-token id attributes, which SubsetTokenizer gives as rows
SPECIAL_ATTRS = ("endoftext", "im_start", "im_end", "object_ref_start", "object_ref_end", "box_start", "box_end",
                 "quad_start", "quad_end", "vision_start", "vision_end", "vision_pad", "image_pad", "video_pad")


def byte_token_ids(base: QwenTokenizer) -> list[int]:
    """The id of each single-byte token, indexed by the byte."""
    return [base.encoding.encode_single_token(bytes([b])) for b in range(256)]


def record_texts(record) -> list[str]:
    """Every text of a record that the model reads or writes: the student's and the teacher's
    chat (with one placeholder frame: frame times are digits, single bytes), the SFT target and
    the answer."""
    from visd_core.teacher.context import teacher_chat     # the teacher imports model code; keep this module light
    from visd_core.prompt import build_chat
    student = build_chat(record, [0.0], 1, 0.0)
    teacher = teacher_chat(record, [0.0], 1, 0.0, (112, 84), None)
    return [render_chat(student, add_generation_prompt=True), render_chat(teacher, add_generation_prompt=True),
            record.reasoning_process or "", record.answer or ""]


def ids_from_records(records, base: QwenTokenizer) -> list[int]:
    """Sorted subset ids: every token of every text of `records` (a JsonlReader's: lines it skips
    are left out), the special tokens and the 256 single-byte tokens."""
    ids = set(SPECIAL_TOKENS.values()) | set(byte_token_ids(base))
    for record in records:
        for text in record_texts(record):
            ids.update(base.encode(text, allow_special=True))
    return sorted(ids)


def check_ids(ids, where: str, base: QwenTokenizer) -> list[int]:
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"{where}: a vocabulary subset is a JSON list of integer token ids")
    if len(set(ids)) != len(ids) or any(not 0 <= i < VOCAB_SIZE for i in ids):
        raise ValueError(f"{where}: token ids must be distinct and in 0..{VOCAB_SIZE - 1}")
    missing = (set(SPECIAL_TOKENS.values()) | set(byte_token_ids(base))) - set(ids)
    if missing:
        raise ValueError(f"{where}: the subset lacks {len(missing)} special or single-byte token(s), e.g. id "
                         f"{min(missing)} (every subset keeps them so that any text can be encoded)")
    return ids


def fingerprint(ids: list[int]) -> str:
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]


class SubsetTokenizer:
    """QwenTokenizer's interface over model rows: row i is tokenizer id `ids[i]`."""

    def __init__(self, base: QwenTokenizer, ids: list[int]):
        self.base, self.ids = base, check_ids(list(ids), "vocab subset", base)
        self.spec = base.spec
        self.vocab_size = self.model_vocab_size = len(self.ids)
        self._row = np.full(VOCAB_SIZE, -1, dtype=np.int64)
        self._row[self.ids] = np.arange(len(self.ids))
        self._id = np.asarray(self.ids, dtype=np.int64)
        self._byte_rows = self._row[byte_token_ids(base)]
        for attr in SPECIAL_ATTRS:
            setattr(self, attr, int(self._row[getattr(base, attr)]))
        self.eos_ids = (self.im_end, self.endoftext)
        self.pad_id = self.endoftext
        self.spelled = 0        # tokens encoded byte by byte since this tokenizer was made

    def __reduce__(self):
        return SubsetTokenizer, (self.base, self.ids)

    def to_rows(self, token_ids: list[int]) -> list[int]:
        rows = self._row[np.asarray(token_ids, dtype=np.int64)] if token_ids else np.zeros(0, np.int64)
        if (rows >= 0).all():
            return rows.tolist()
        out = []
        for t, r in zip(token_ids, rows.tolist()):
            if r >= 0:
                out.append(r)
            else:       # not in the subset: its bytes, one single-byte token each (byte-level BPE)
                self.spelled += 1
                out.extend(self._byte_rows[list(self.base.encoding.decode_single_token_bytes(t))].tolist())
        return out

    def to_token_ids(self, rows) -> list[int]:
        rows = np.asarray([int(r) for r in rows], dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self.ids)):
            raise ValueError(f"row {int(rows.min() if rows.min() < 0 else rows.max())} is outside the "
                             f"{len(self.ids)}-row vocabulary subset")
        return self._id[rows].tolist()

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        return self.to_rows(self.base.encode(text, allow_special=allow_special))

    def decode(self, rows) -> str:
        return self.base.decode(self.to_token_ids(rows))

    def decode_pieces(self, rows) -> list[str]:
        return self.base.decode_pieces(self.to_token_ids(rows))

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
        return self.encode(render_chat(messages, add_generation_prompt), allow_special=True)


def read_ids(path: str | Path, base: QwenTokenizer) -> list[int]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"model.vocab_subset {path}: no such file (a JSON list of token ids; or \"data\")")
    try:
        ids = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"model.vocab_subset {path}: not JSON ({e})") from None
    return check_ids(ids, str(path), base)


def write_ids(ids: list[int], path: str | Path) -> None:
    Path(path).write_text(json.dumps(ids) + "\n")


def with_folder_subset(tok: QwenTokenizer, folder: str | Path) -> QwenTokenizer | SubsetTokenizer:
    """The tokenizer over a saved model's rows: `tok` on `folder`/vocab_subset.json (a run folder or
    an export) when there is one, else `tok` itself."""
    path = Path(folder) / FILE_NAME
    return SubsetTokenizer(tok, read_ids(path, tok)) if path.is_file() else tok


def check_run_subset(tok, out: Path, resuming: bool, is_main: bool) -> None:
    """Keep `<out>/vocab_subset.json` the rows this run's weights index: written when the run starts,
    and a resumed run must get the same subset (regenerated data can change a "data" subset)."""
    path = Path(out) / FILE_NAME
    ids = getattr(tok, "ids", None)
    if resuming:
        saved = json.loads(path.read_text()) if path.is_file() else None
        if saved != ids:
            raise ValueError(f"{out}: the checkpoint was trained on "
                             f"{'a ' + str(len(saved)) + '-row vocabulary subset' if saved else 'the full vocabulary'}, "
                             f"this config gives {'a ' + str(len(ids)) + '-row subset' if ids else 'the full vocabulary'}"
                             f"{' (sha ' + fingerprint(ids) + ' vs ' + fingerprint(saved) + ')' if ids and saved else ''}")
        return
    if is_main:
        Path(out).mkdir(parents=True, exist_ok=True)
        if ids is not None:
            write_ids(ids, path)
        elif path.is_file():       # a reused folder: not this run's
            path.unlink()


def model_tokenizer(model_cfg, train_records=None) -> QwenTokenizer | SubsetTokenizer:
    """The tokenizer whose ids are the model's rows: Qwen's, or the subset `model.vocab_subset` names
    ("data": that of `train_records`, the training reader's records). A checkpoint at model.path
    brings its own rows: its vocab_subset.json (an export of a tiny subset model) or the full
    vocabulary; model.vocab_subset applies to the tiny model only."""
    base = load_tokenizer(model_cfg.tokenizer)
    spec = model_cfg.vocab_subset
    if model_cfg.path:
        tok = with_folder_subset(base, model_cfg.path)
        if spec and tok is base:
            log.info("model.vocab_subset = %r ignored: the checkpoint at model.path has its own rows", spec)
        return tok
    if not spec:
        return base
    if spec == "data":
        # The training data only: a row no training text uses would never be trained, and a
        # validation-only word is spelled in bytes, as any unseen text is.
        if not train_records:
            raise ValueError("model.vocab_subset = \"data\" needs the training records (none were given)")
        ids = ids_from_records(train_records, base)
        log.info("vocabulary subset: %d rows (of the tokenizer's %d ids) from %d training records", len(ids),
                 N_RANKS + len(SPECIAL_TOKENS), len(train_records))
    else:
        ids = read_ids(spec, base)
    return SubsetTokenizer(base, ids)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write the vocabulary subset of JSONL datasets (model.vocab_subset).")
    ap.add_argument("--data", nargs="+", required=True, help="JSONL record files (their videos beside them)")
    ap.add_argument("--out", required=True, help="output JSON file")
    ap.add_argument("--tokenizer", default="", help="visd_core.tokenizer spec (default: bundled Qwen ranks)")
    a = ap.parse_args(argv)
    records = [r for path in a.data for r in JsonlReader(path, shuffle=False).records]
    ids = ids_from_records(records, load_tokenizer(a.tokenizer))
    write_ids(ids, a.out)
    print(f"{a.out}: {len(ids)} token ids from {len(records)} records (sha {fingerprint(ids)})")


if __name__ == "__main__":
    main()
