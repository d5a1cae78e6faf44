"""python -m visd_core.visual_prompts: PNGs of a synthetic record's key frames, one-line errors."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visd_core.config import Data as DataCfg
from visd_core.data.model_inputs import decode_frames
from visd_core.data.reader import JsonlReader
from visd_core.visual_prompts import apply_visual_prompt
from visd_core.visual_prompts.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys, *args):
    main([str(a) for a in args])
    return capsys.readouterr()


def test_one_kind_writes_each_key_frame_and_its_raw(synthetic, tmp_path, capsys):
    _, jsonl = synthetic
    out = tmp_path / "png"
    printed = run_cli(capsys, "--data", jsonl, "--id", "train_00000", "--kind", "darken", "--out", out).out.split()
    assert sorted(printed) == sorted(str(p) for p in out.iterdir())
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 4 and all(n.startswith("train_00000_f") for n in names)   # 2 key frames x {darken, raw}
    rec = next(r for r in JsonlReader(str(jsonl), shuffle=False).records if r.id == "train_00000")
    video = decode_frames(rec, DataCfg())
    darkened = apply_visual_prompt(video.frames, video.times, rec, "darken")
    for name in names:
        frame_no, kind = int(name.split("_f")[1].split("_")[0]), name.rsplit("_", 1)[1][:-4]
        img = np.asarray(Image.open(out / name))
        expected = darkened if kind == "darken" else video.frames
        assert np.array_equal(img, expected[frame_no - 1]), name        # PNG is lossless: exact


def test_all_kinds_and_the_contact_sheet(synthetic, tmp_path, capsys, clip_dir):
    _, jsonl = synthetic
    out = tmp_path / "all"
    res = run_cli(capsys, "--data", jsonl, "--id", "train_00002", "--kind", "all", "--out", out)
    assert "api_prompt skipped" in res.err
    kinds = {p.name.rsplit("_", 1)[1][:-4] for p in out.glob("train_*.png")}
    assert kinds == {"circle", "darken", "numpro", "raw"}
    sheet = Image.open(out / "kinds.png")
    assert sheet.width >= 4 * 160 and sheet.height >= 120
    res = run_cli(capsys, "--data", jsonl, "--id", "train_00002", "--kind", "all", "--out", out,
                  "--clip-path", clip_dir)
    assert any(p.endswith("_api_prompt.png") for p in res.out.split())
    assert Image.open(out / "kinds.png").width > sheet.width      # a fifth tile


def test_video_root_resolves_relative_paths(synthetic, tmp_path, capsys):
    folder, jsonl = synthetic
    moved = tmp_path / "elsewhere.jsonl"
    moved.write_text(jsonl.read_text())                 # relative video paths no longer next to it
    res = run_cli(capsys, "--data", moved, "--id", "train_00002", "--kind", "circle", "--out", tmp_path / "o",
                  "--video-root", folder)
    assert len(res.out.split()) == 2


@pytest.mark.parametrize("args, message", [
    (["--id", "nope", "--kind", "darken"], "no usable record with id 'nope'"),
    (["--id", "train_00002", "--kind", "red_circle"], "unknown kind 'red_circle' (valid: api_prompt, circle"),
    (["--id", "train_00002", "--kind", "api_prompt"], "api_prompt needs a CLIP model: pass --clip-path"),
    (["--id", "train_00002", "--kind", "darken", "--num-frames", "0"], "--num-frames must be >= 1"),
    (["--id", "train_00002", "--kind", "api_prompt", "--clip-path", "/nonexistent/clip"], "is not a directory"),
])
def test_errors_are_one_line_and_exit_2(synthetic, tmp_path, capsys, args, message):
    _, jsonl = synthetic
    with pytest.raises(SystemExit) as e:
        main(["--data", str(jsonl), "--out", str(tmp_path / "o"), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not (tmp_path / "o").exists()


def test_missing_file_through_python_m(tmp_path):
    """The module entry point itself: a missing JSONL is one line on stderr and exit status 2."""
    res = subprocess.run([sys.executable, "-m", "visd_core.visual_prompts", "--data", str(tmp_path / "none.jsonl"),
                          "--id", "x", "--kind", "darken", "--out", str(tmp_path / "o")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == f"visd_core.visual_prompts: error: {tmp_path / 'none.jsonl'}: no such file"
