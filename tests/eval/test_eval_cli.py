import json
import subprocess
import sys
from pathlib import Path

import pytest

from visd_core.eval.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def _write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return str(path)


def test_vstar_prints_the_table_row(tmp_path, capsys):
    scores = _write(tmp_path / "s.jsonl", [
        {"qid": "a", "chain": 1, "acc": 1, "tiou": 0.5, "viou": 0.2},
        {"qid": "a", "chain": 2, "acc": 1, "tiou": 0.4, "viou": 0.1},
        "",
        {"qid": 7, "chain": 1, "acc": 0, "tiou": 0.1, "viou": 0},
        {"qid": 7, "chain": 2, "acc": 0, "tiou": 0, "viou": 0}])
    assert main(["vstar", "--scores", scores]) == 0
    row = json.loads(capsys.readouterr().out)
    assert list(row) == ["Acc", "tIoU_chain1", "tIoU_chain2", "vIoU_chain1", "vIoU_chain2", "mAM", "mLGM", "n"]
    assert row["Acc"] == 50.0 and row["tIoU_chain1"] == 30.0 and row["n"] == 2


@pytest.mark.parametrize("lines,message", [
    (['{"qid": "a", "chain": 1, "acc": 1, "tiou": 0.5, "viou": 0.2}', "{not json"], "s.jsonl:2: invalid JSON"),
    ([{"qid": "a", "chain": 3, "acc": 1, "tiou": 0.5, "viou": 0.2}], "s.jsonl:1: 'chain' must be 1 or 2"),
    ([{"qid": "a", "chain": 1, "acc": 1.5, "tiou": 0.5, "viou": 0.2}], "s.jsonl:1: 'acc' must be a finite number"),
    ([{"chain": 1, "acc": 1, "tiou": 0.5, "viou": 0.2}], "s.jsonl:1: 'qid'"),
    ([{"qid": "a", "chain": 1, "acc": 1, "tiou": 0.5, "viou": 0.2}] * 2, "s.jsonl:2: question 'a' has a second"),
    ([{"qid": "a", "chain": 1, "acc": 1, "tiou": 0.5, "viou": 0.2}], "no chain-2 scores"),
    (["[1, 2]"], "s.jsonl:1: expected a JSON object"),
])
def test_vstar_bad_lines_name_the_line(tmp_path, capsys, lines, message):
    assert main(["vstar", "--scores", _write(tmp_path / "s.jsonl", lines)]) == 2
    assert message in capsys.readouterr().err


def test_charades_counts_missing_and_unparsed_as_wrong(tmp_path, capsys):
    gt = _write(tmp_path / "g.jsonl", [{"id": i, "segment": [0, 10]} for i in range(5)])
    pred = _write(tmp_path / "p.jsonl", [
        {"id": 0, "segment": [0, 10]},                                        # IoU 1
        {"id": 1, "output": "<think>x</think><answer>From <t>0</t>s to <t>5</t>s</answer>"},   # 0.5
        {"id": 2, "output": "no idea"},                                       # unparsed
        {"id": 3, "segment": [8, 2]}])                                        # inverted; id 4 missing
    assert main(["charades", "--pred", pred, "--gt", gt]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row == {"R@0.3": 40.0, "R@0.5": 40.0, "R@0.7": 20.0, "mIoU": 30.0, "n": 5, "unparsed": 3}


@pytest.mark.parametrize("pred,gt,message", [
    ([{"id": 0}], [{"id": 0, "segment": [0, 1]}], "p.jsonl:1: need 'segment'"),
    ([{"id": 9, "segment": [0, 1]}], [{"id": 0, "segment": [0, 1]}], "p.jsonl:1: id '9' is not in"),
    ([{"id": 0, "segment": [0, "x"]}], [{"id": 0, "segment": [0, 1]}], "p.jsonl:1: 'end' must be"),
    ([], [{"id": 0, "segment": [3, 1]}], "g.jsonl:1: ground-truth segment"),
    ([], [{"id": 0, "segment": [0, 1]}, {"id": 0, "segment": [0, 1]}], "g.jsonl:2: duplicate id '0'"),
])
def test_charades_bad_lines_name_the_line(tmp_path, capsys, pred, gt, message):
    rc = main(["charades", "--pred", _write(tmp_path / "p.jsonl", pred), "--gt", _write(tmp_path / "g.jsonl", gt)])
    assert rc == 2 and message in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    scores = _write(tmp_path / "s.jsonl", [{"qid": "a", "chain": k, "acc": 1, "tiou": 0.5, "viou": 0.5}
                                           for k in (1, 2)])
    out = subprocess.run([sys.executable, "-m", "visd_core.eval", "vstar", "--scores", scores],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["mAM"] == pytest.approx(200 / 3, abs=1e-3)
