"""The synthetic dataset's ground truth is true to the decoded pixels.

Every check decodes the written mp4 and finds each shape by its color; nothing here trusts the
generator's own bookkeeping. Lossless 4:4:4 H.264 decodes within 1 level of the rendered colors,
so thresholds are tight and box edges may be off by at most MARGIN px.
"""
import filecmp
import json
import re

import av
import numpy as np
import pytest

from visd_core.data.reader import JsonlReader
from visd_core.data.resize import box_to_pixels
from visd_core.data.schema import MCQ_TASKS, TASKS
from visd_core.data.synthetic import MAX_PIXELS, NUM_FRAMES, RW, RH, generate, main, write_mp4
from visd_core.data.synthetic_scene import COLORS, FPS, H, W, sample_scene
from visd_core.data.video import sample_frame_indices

MARGIN = 1          # px of box slack allowed for the codec
CLAIM = re.compile(r"<obj>(.*?)</obj>((?:<box>\[.*?\]</box>)+)at<t>(.*?)</t>s")   # Open-o3-Video's parser


def decode(path):
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def color_mask(frames, color):
    """[..., H, W] pixels within 12 levels of the color on every channel."""
    return (np.abs(frames.astype(int) - COLORS[color]) <= 12).all(axis=-1)


def pixel_box(mask):
    """(x1, y1, x2 + 1, y2 + 1) of the mask's pixels: edges, comparable to normalized * size."""
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def touching(ma, mb):
    """8-adjacent or overlapping: a dilated by one pixel meets b."""
    d = ma.copy()
    d[1:] |= ma[:-1]
    d[:-1] |= ma[1:]
    d2 = d.copy()
    d2[:, 1:] |= d[:, :-1]
    d2[:, :-1] |= d[:, 1:]
    return bool((d2 & mb).any())


def moving_frames(mask_FHW):
    """Frames at which the shape is in motion: its centroid differs from the previous or the next frame."""
    c = np.array([np.argwhere(m).mean(axis=0) for m in mask_FHW])
    moved = np.abs(np.diff(c, axis=0)).max(axis=1) > 0.5
    return {i for i in range(len(c)) if (i > 0 and moved[i - 1]) or (i < len(moved) and moved[i])}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate(str(out), n=36, seed=0, n_val=6, workers=1, progress=False)
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    return out, records


@pytest.mark.parametrize("seed", range(8))
def test_scene_ground_truth_matches_every_decoded_frame(tmp_path, seed):
    scene = sample_scene(np.random.default_rng([99, seed]))
    path = str(tmp_path / "scene.mp4")
    write_mp4(path, scene.render())
    frames = decode(path)
    assert len(frames) == scene.n_frames
    masks = {s.name: color_mask(frames, s.color) for s in scene.shapes}
    for s in scene.shapes:
        m = masks[s.name]
        seen = m.sum(axis=(1, 2)) >= 10
        assert np.array_equal(seen, s.visible), s.name
        for f in np.nonzero(seen)[0]:
            x1, y1, x2, y2 = s.boxes()[f]
            assert np.abs(np.subtract(pixel_box(m[f]), (x1, y1, x2 + 1, y2 + 1))).max() <= MARGIN
        span = s.motion_span()
        assert moving_frames(m[s.visible]) == (set() if span is None else set(range(span[0], span[1] + 1)))
    if scene.push is not None:
        a, b = scene.shapes[scene.push.pusher].name, scene.shapes[scene.push.pushed].name
        contact = {f for f in range(scene.n_frames) if touching(masks[a][f], masks[b][f])}
        assert contact == set(range(scene.push.start, scene.push.end + 1))
    names = [s.name for s in scene.shapes]      # no other pair ever touches
    pair = None if scene.push is None else {names[scene.push.pusher], names[scene.push.pushed]}
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            if {x, y} != pair:
                assert not any(touching(masks[x][f], masks[y][f]) for f in range(scene.n_frames))


def test_records_are_valid_and_cover_every_task(dataset):
    out, records = dataset
    reader = JsonlReader(str(out / "train.jsonl"), shuffle=False)
    assert not reader.skipped and len(reader.records) == 36
    assert {r["task"] for r in records} == set(TASKS)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resized_size"] == [RW, RH] == [112, 84] and meta["tokens_per_frame"] == 12
    assert meta["max_pixels"] == MAX_PIXELS and meta["num_frames"] == NUM_FRAMES
    assert len((out / "val.jsonl").read_text().splitlines()) == 6


def test_key_frame_boxes_bound_the_shapes_pixels(dataset):
    out, records = dataset
    for rec in records:
        frames = decode(str(out / rec["video_path"]))
        sampled = sample_frame_indices(len(frames), NUM_FRAMES)
        assert rec["key_frames"], rec["id"]
        for kf in rec["key_frames"]:
            f = round(kf["time"] * FPS)
            assert f in sampled and abs(f / FPS - kf["time"]) < 1e-9    # the model sees this frame
            for name, boxes in rec["key_items"][str(kf["idx"])].items():
                mask = color_mask(frames[f], name.split()[0])
                (bx1, by1, bx2, by2), = boxes
                px = pixel_box(mask)
                assert np.abs(np.subtract(px, (bx1 * W, by1 * H, bx2 * W, by2 * H))).max() <= MARGIN, \
                    (rec["id"], name, f)


EVENTS = [  # question pattern -> event kind, for every question that comes with a window
    (r"When is the (.+) visible\?|What happens to the (.+)\?", "visible"),
    (r"When does the (.+) move\?|How does the (.+) move\?", "move"),
    (r"When does the (.+) push the (.+)\?|What happens between the (.+) and the (.+)\?", "push"),
]


def event_frames(frames, question):
    """The frames on which the question's event holds, derived from the pixels alone."""
    for pattern, kind in EVENTS:
        if m := re.fullmatch(pattern, question):
            names = [g for g in m.groups() if g]
            masks = [color_mask(frames, n.split()[0]) for n in names]
            if kind == "visible":
                return kind, {f for f in range(len(frames)) if masks[0][f].sum() >= 10}
            if kind == "move":
                return kind, moving_frames(masks[0])
            return kind, {f for f in range(len(frames)) if touching(masks[0][f], masks[1][f])}
    raise AssertionError(f"no event pattern for {question!r}")


def test_windows_cover_exactly_the_event_frames(dataset):
    out, records = dataset
    kinds = set()
    for rec in records:
        if "window" not in rec:
            continue
        frames = decode(str(out / rec["video_path"]))
        kind, holds = event_frames(frames, rec["question"])
        s, e = rec["window"]
        assert holds == {f for f in range(len(frames)) if s - 1e-6 <= f / FPS <= e + 1e-6}, (rec["id"], kind)
        kinds.add(kind)
    assert kinds == {"visible", "move", "push"}


def test_reasoning_cites_exactly_the_evidence(dataset):
    _, records = dataset
    for rec in records:
        think, answer = re.fullmatch(r"<think>(.*)</think><answer>(.*)</answer>",
                                     rec["reasoning_process"]).groups()
        times = {kf["time"]: str(kf["idx"]) for kf in rec["key_frames"]}
        cited = set()
        for name, boxes, t in CLAIM.findall(think):
            idx = times[float(t)]
            assert json.loads(re.search(r"\[.*?\]", boxes).group()) == \
                box_to_pixels(rec["key_items"][idx][name][0], RW, RH), rec["id"]
            cited.add((idx, name))
        assert cited == {(i, n) for i, objs in rec["key_items"].items() for n in objs}, rec["id"]
        if rec["task"] in ("temporal_qa", "temporal_mcq"):
            s, e = rec["window"]
            assert all(s <= float(t) <= e for t in re.findall(r"<t>(.*?)</t>", think))    # segment reward 1
            assert answer.startswith(f"From <t>{s:.1f}</t>s to <t>{e:.1f}</t>s")
        if rec["task"] in MCQ_TASKS:
            assert len(rec["options"]) == 4 and [o[:3] for o in rec["options"]] == ["A. ", "B. ", "C. ", "D. "]
            assert answer == rec["answer"] or answer.endswith(f"Correct Option: {rec['answer']}")
        if rec["task"] == "temporal_mcq":
            correct = rec["options"]["ABCD".index(rec["answer"])]
            assert correct == f"{rec['answer']}. From {s:.1f}s to {e:.1f}s"
        if rec["task"] == "visual_qa":
            (idx, objs), = rec["key_items"].items()
            box = box_to_pixels(objs[rec["answer"]][0], RW, RH)
            assert answer == f"<obj>{rec['answer']}</obj><box>[{','.join(map(str, box))}]</box>"
        if rec["task"] in ("st_freeform", "video_freeform"):
            assert answer == rec["answer"]


def test_deterministic_for_a_seed_whatever_the_workers(tmp_path):
    generate(str(tmp_path / "a"), n=6, seed=5, n_val=2, workers=1, progress=False)
    generate(str(tmp_path / "b"), n=6, seed=5, n_val=2, workers=2, progress=False)
    generate(str(tmp_path / "c"), n=6, seed=6, n_val=2, workers=1, progress=False)
    for name in ("train.jsonl", "val.jsonl"):
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False)
        assert not filecmp.cmp(tmp_path / "a" / name, tmp_path / "c" / name, shallow=False)
    videos = sorted(p.name for p in (tmp_path / "a" / "videos").iterdir())
    assert len(videos) == 8
    assert all(filecmp.cmp(tmp_path / "a" / "videos" / v, tmp_path / "b" / "videos" / v, shallow=False)
               for v in videos)


def test_command_line(tmp_path, capsys):
    main(["--out", str(tmp_path), "--n", "6", "--n-val", "0", "--workers", "1"])
    printed = capsys.readouterr().out
    assert "wrote 6 train + 0 val records" in printed and "12 visual tokens per frame" in printed
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 6
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--n", "0"])
