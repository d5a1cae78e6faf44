"""The evaluation runner: public formats read into records, a tiny exported model evaluated end to
end, resume equal to an uninterrupted run, skips listed, and the summary's numbers by hand."""
import json
import math
import shutil

import pytest
import torch

from visd_core.config import Config, Data, Reward
from visd_core.data.synthetic import RH, RW
from visd_core.eval import runner
from visd_core.eval.__main__ import main
from visd_core.eval.formats import detect_format, read_eval_data
from visd_core.rewards.iou import interval_iou
from visd_core.tokenizer import load_tokenizer

OPTS = ["--num-frames", "4", "--max-new-tokens", "6", "--batch-size", "2"]


def video(synthetic, i):
    return synthetic / "videos" / f"train_{i:05d}.mp4"


def rows_of(out):
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------- fixtures in the public formats
@pytest.fixture(scope="module")
def charades(tmp_path_factory, synthetic):
    """Charades-STA's test file layout: `sid start end##sentence`, videos at <root>/<sid>.mp4."""
    root = tmp_path_factory.mktemp("charades")
    for i, sid in enumerate(["AO8RW", "Y6R7T", "3MSZA"]):
        shutil.copy(video(synthetic, i), root / f"{sid}.mp4")
    lines = ["AO8RW 0.0 2.4##a person is putting a book on a shelf.",
             "Y6R7T 1.2 3.0##person opens the door.",
             "3MSZA 0.5 1.5##a person sits down.",
             "GONE1 0.0 1.0##this video was never downloaded.",
             "AO8RW 4.0##a line without its end time."]
    (root / "charades_sta_test.txt").write_text("\n".join(lines) + "\n")
    return root / "charades_sta_test.txt"


def vstar_annotation(vid, **changes):
    """One entry of V-STaR's V_STaR_test.json (fields of its data/README.md, boxes as eval.py reads them)."""
    ann = {"vid": vid, "domain": "Sports", "fps": 5.0, "width": 160, "height": 120, "frame_count": 30,
           "question": "What does the red circle do?", "chain": "<think>...</think>", "object": "red circle",
           "answer": "The red circle moves left.", "temporal_question": "When does the red circle move?",
           "timestamps": [1, 3], "spatial_question": "Where is the red circle while it moves?",
           "spatial_question_2": "Where is the red circle?",
           "bboxes": [{"timestamp": 1, "frame_index": 5, "xmin": 0, "ymin": 0, "xmax": 80, "ymax": 60},
                      {"timestamp": 2, "frame_index": 10, "xmin": 80, "ymin": 60, "xmax": 160, "ymax": 120}]}
    return {**ann, **changes}


@pytest.fixture
def vstar_file(tmp_path, synthetic):
    (tmp_path / "videos" / "part1").mkdir(parents=True)
    shutil.copy(video(synthetic, 0), tmp_path / "videos" / "part1" / "vidA.mp4")   # found below the root
    anns = [vstar_annotation("vidA"), vstar_annotation("vidB"), vstar_annotation("vidC", timestamps=[3])]
    (tmp_path / "V_STaR_test.json").write_text(json.dumps(anns, indent=1))
    return tmp_path / "V_STaR_test.json"


# ---------------------------------------------------------------------------- readers
def test_charades_lines_become_temporal_records(charades):
    data = read_eval_data(str(charades))
    assert data.format == "charades"
    assert [it.record.id for it in data.items] == ["AO8RW#1", "Y6R7T#2", "3MSZA#3", "GONE1#4"]
    r = data.items[1].record
    assert r.task == "temporal_qa" and r.window == (1.2, 3.0) and "person opens the door" in r.question
    assert r.video_path == str(charades.parent / "Y6R7T.mp4")
    assert dict(data.skipped) == {"invalid": ["AO8RW#5"]}


def test_vstar_annotation_becomes_five_chained_records(vstar_file):
    data = read_eval_data(str(vstar_file), video_root=str(vstar_file.parent / "videos"))
    assert data.format == "vstar"
    assert dict(data.skipped) == {"invalid": ["vidC#2"]}            # timestamps without an end
    first = data.items[:5]
    assert [it.record.id for it in first] == [f"vidA#0/{p}" for p in ("what", "when1", "where1", "where2", "when2")]
    assert [it.record.task for it in first] == ["st_freeform", "temporal_qa", "visual_qa", "visual_qa", "temporal_qa"]
    assert [(it.vstar["part"], it.vstar["chain"]) for it in first] == [
        ("what", None), ("when", 1), ("where", 1), ("where", 2), ("when", 2)]
    what, when1, where1, where2, when2 = (it.record for it in first)
    assert what.answer == "The red circle moves left." and when1.window == (1.0, 3.0)
    assert what.video_path.endswith("videos/part1/vidA.mp4")
    assert [(k.time, where1.boxes_at(k.idx)) for k in where1.key_frames] == [
        (1.0, {"red circle": [[0.0, 0.0, 0.5, 0.5]]}), (2.0, {"red circle": [[0.5, 0.5, 1.0, 1.0]]})]
    assert where1.answer == "red circle" and "from 1s to 3s" in where1.question
    assert "Give 2 box(es)" in where2.question and "from 1s to 3s" not in where2.question   # chain 2: no window
    assert "[[0,0,80,60],[80,60,160,120]]" in when2.question and "160x120" in when2.question
    assert when1.question == "When does the red circle move?"                        # chain 1: unconditioned
    assert data.items[5].record.video_path.endswith("videos/vidB.mp4")               # missing: left to the runner

    readme_spelling = vstar_annotation("vidA", bboxes=[{"1_5": {"xmin": 0, "ymin": 0, "xmax": 80, "ymax": 60},
                                                        "2_10": {"xmin": 80, "ymin": 60, "xmax": 160, "ymax": 120}}])
    vstar_file.write_text(json.dumps([readme_spelling]))
    again = read_eval_data(str(vstar_file), video_root=str(vstar_file.parent / "videos"))
    assert [it.record for it in again.items] == [it.record for it in first]


def test_format_detection(tmp_path):
    for name, text, fmt in [("a.jsonl", "", "jsonl"), ("a.json", "", "vstar"), ("a.txt", "", "charades"),
                            ("a", '  [{"vid": 1}]', "vstar"), ("b", '{"id": 1}\n', "jsonl"),
                            ("c", "X 1 2##q\n", "charades")]:
        (tmp_path / name).write_text(text)
        assert detect_format(str(tmp_path / name)) == fmt, name


# ---------------------------------------------------------------------------- the tiny exported model, end to end
@pytest.fixture(scope="module")
def straight(tmp_path_factory, exported, charades):
    out = tmp_path_factory.mktemp("straight")
    assert main(["run", "--model", str(exported), "--data", str(charades), "--out", str(out), *OPTS]) == 0
    return out


def test_run_writes_predictions_and_summary(straight, charades):
    rows = rows_of(straight)
    assert [r["id"] for r in rows] == ["AO8RW#1", "Y6R7T#2", "3MSZA#3"]
    windows = {it.record.id: it.record.window for it in read_eval_data(str(charades)).items}
    for r in rows:
        assert r["task"] == "temporal_qa" and isinstance(r["output"], str) and r["frame_size"] == [RW, RH]
        assert set(r["components"]) == {"ans", "fmt", "ans_tmp", "ans_spa", "thk_tmp", "thk_spa"}
        expected = interval_iou(tuple(r["interval"]), windows[r["id"]]) if r["interval"] else 0.0
        assert r["temporal_iou"] == expected and r["answer_correct"] is not None
    s = json.loads((straight / "summary.json").read_text())
    assert (s["n_records"], s["n_scored"], s["n_skipped"]) == (4, 3, 2)
    assert s["skipped"] == {"invalid": ["AO8RW#5"], "missing_video": ["GONE1#4"]}
    assert s["format"] == "charades" and list(s["per_task"]) == ["temporal_qa"]
    assert s["overall"]["temporal"]["n"] == 3 and "spatial" not in s["overall"] and "vstar" not in s


def test_resume_equals_an_uninterrupted_run(tmp_path, exported, charades, straight):
    args = ["run", "--model", str(exported), "--data", str(charades), "--out", str(tmp_path), *OPTS]
    assert main(args + ["--limit", "2"]) == 0
    assert [r["id"] for r in rows_of(tmp_path)] == ["AO8RW#1", "Y6R7T#2"]
    with open(tmp_path / "predictions.jsonl", "ab") as f:
        f.write(b'{"id": "3MSZA#3", "outp')                           # killed while writing a row
    assert main(args) == 0
    rows = rows_of(tmp_path)
    assert [r["id"] for r in rows] == ["AO8RW#1", "Y6R7T#2", "3MSZA#3"]
    assert rows == rows_of(straight)                                  # greedy: the same texts, token for token
    assert (tmp_path / "summary.json").read_text() == (straight / "summary.json").read_text()


def test_checkpoint_step_folder_loads_on_one_process(tmp_path, world_of_one):
    from visd_core import checkpoint as ckpt
    from visd_core.config import save_config
    from visd_core.model.build import build_model
    cfg = Config()
    cfg.model.tie_embeddings = True
    cfg.data.max_pixels = 9408
    model = build_model(cfg.model, world_of_one, seed=5)               # FSDP2-sharded, as the trainer saves it
    with torch.no_grad():                                              # off the seeded init a rebuild would give
        for p in model.parameters():
            p.to_local().add_(0.01 * torch.randn_like(p.to_local()))
    run_dir = tmp_path / "runs" / "x"
    save_config(cfg, run_dir)
    step = ckpt.save_checkpoint(run_dir / "checkpoints", 7, world_of_one, model=model,
                                optimizer=torch.optim.AdamW(model.parameters()))
    policy = runner.load_policy(str(step), torch.device("cpu"))
    got = policy.model.state_dict()
    for name, p in model.named_parameters():
        assert torch.equal(p.full_tensor(), got[name]), name
    assert policy.data.max_pixels == 9408 and policy.reward == cfg.reward
    (step / ckpt.MARKER).unlink()
    with pytest.raises(ValueError, match="incomplete"):
        runner.load_policy(str(step), torch.device("cpu"))


# ---------------------------------------------------------------------------- the summary's numbers, by hand
@pytest.fixture
def scripted(monkeypatch):
    """No model: the policy answers each record id with a fixed text."""
    script = {}
    policy = runner.Policy(None, load_tokenizer(""), Data(num_frames=4, max_pixels=9408), Reward(),
                           torch.device("cpu"), torch.float32)
    monkeypatch.setattr(runner, "load_policy", lambda path: policy)
    monkeypatch.setattr(runner, "generate_texts",
                        lambda policy, samples, rollout, gen: [(script[s.record.id], False) for s in samples])
    return script


def test_summary_numbers_by_hand(tmp_path, synthetic, scripted):
    vid = str(video(synthetic, 0))
    t = lambda rid, w: {"id": rid, "task": "temporal_qa", "question": "When?",  # noqa: E731
                        "video_path": vid, "window": w}
    mcq = lambda rid, a: {"id": rid, "task": "video_mcq", "question": "Which?", "options": ["x", "y"],  # noqa: E731
                          "answer": a, "video_path": vid}
    records = [t("t1", [1, 3]), t("t2", [0, 4]), t("t3", [2, 4]),
               {"id": "v1", "task": "visual_qa", "question": "Where?", "answer": "red circle", "video_path": vid,
                "key_frames": [{"time": 1.0, "idx": 0}], "key_items": {"0": {"red circle": [[0, 0, 0.5, 0.5]]}}},
               mcq("m1", "B"), mcq("m2", "A"), t("gone", [0, 1]) | {"video_path": "nowhere.mp4"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    scripted.update({
        "t1": "<think>From <t>1</t>s to <t>3</t>s.</think><answer>From <t>1</t>s to <t>3</t>s</answer>",  # IoU 1, fmt
        "t2": "<answer>From <t>2</t>s to <t>4</t>s</answer>",                       # IoU 0.5: correct (>= 0.5)
        "t3": "I do not know",                                                      # unparsed: 0
        "v1": f"<answer><obj>red circle</obj><box>[0,0,{RW // 4},{RH // 2}]</box></answer>",   # half the box: 0.5
        "m1": "<answer>B</answer>", "m2": "<answer>B</answer>"})
    s = runner.run("model", str(tmp_path / "d.jsonl"), str(tmp_path / "out"), progress=False)
    o = s["overall"]
    assert o["n"] == 6 and o["answer_accuracy"] == pytest.approx(100 * 4 / 6)
    assert o["format_rate"] == pytest.approx(100 / 6)
    assert o["temporal"] == pytest.approx({"R@0.3": 200 / 3, "R@0.5": 200 / 3, "R@0.7": 100 / 3, "mIoU": 50.0,
                                           "n": 3, "unparsed": 1})
    assert o["spatial"] == {"mIoU": 50.0, "n": 1}
    assert s["per_task"]["video_mcq"]["answer_accuracy"] == 50.0 and "temporal" not in s["per_task"]["video_mcq"]
    assert s["skipped"] == {"missing_video": ["gone"]} and s["n_records"] == 7
    t2 = next(r for r in rows_of(tmp_path / "out") if r["id"] == "t2")
    assert t2["interval"] == [2.0, 4.0] and t2["components"]["ans_tmp"] == 0.5 and t2["components"]["ans"] is None


def test_vstar_chain_metrics_by_hand(tmp_path, vstar_file, scripted):
    box1, box2 = f"[0,0,{RW // 2},{RH // 2}]", f"[{RW // 2},{RH // 2},{RW},{RH}]"   # the two GT boxes, resized
    scripted.update({
        "vidA#0/what": "<answer>The red circle moves left.</answer>",                       # ROUGE 1: correct
        "vidA#0/when1": "<answer>From <t>2</t>s to <t>3</t>s</answer>",                      # tIoU 0.5
        "vidA#0/where1": f"<answer><obj>c</obj><box>{box1}</box>at<t>1</t>s "                 # both frames: 1
                         f"<obj>c</obj><box>{box2}</box>at<t>2</t>s</answer>",
        "vidA#0/where2": f"<answer><obj>c</obj><box>{box1}</box>at<t>1</t>s</answer>",       # one of two frames: 0.5
        "vidA#0/when2": "It is [1, 3]."})                                                  # untagged, still read: 1
    s = runner.run("model", str(vstar_file), str(tmp_path / "out"), video_root=str(tmp_path / "videos"),
                   progress=False)
    am = ((1 + 0.5 + 1) / 3 + (1 + 1 + 0.5) / 3) / 2
    lgm = lambda a, t, v: -(math.log(1 - a + 1e-6) + math.log(1 - t + 1e-6) + math.log(1 - v + 1e-6)) / 3  # noqa: E731
    assert s["vstar"] == pytest.approx({"Acc": 100.0, "tIoU_chain1": 50.0, "tIoU_chain2": 100.0, "vIoU_chain1": 100.0,
                                        "vIoU_chain2": 50.0, "mAM": 100 * am,
                                        "mLGM": 100 * (lgm(1, 0.5, 1) + lgm(1, 1, 0.5)) / 2, "n": 1})
    assert s["per_task"]["visual_qa"]["spatial"] == {"mIoU": 75.0, "n": 2}
    assert s["skipped"] == {"invalid": ["vidC#2"], "missing_video": [f"vidB#1/{p}" for p in
                                                                      ("what", "when1", "where1", "where2", "when2")]}
