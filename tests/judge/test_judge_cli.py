"""python -m visd_core.judge: a file of rollouts in, one feedback line per rollout out."""
import json

import pytest

from fake_openai import FakeOpenAI
from visd_core.judge.__main__ import main

SECRET = "sk-cli-0123456789abcdef"

ROLLOUTS = [
    {"id": "a", "task": "video_mcq", "question": "Which shape moves fastest? [case:good]",
     "options": ["A. red circle", "B. blue square"], "answer": "B",
     "output": "<think>The blue square is fastest.</think><answer>B</answer>"},
    {"id": "b", "task": "temporal_qa", "question": "When does the red circle move? [case:bad]", "answer": "",
     "evidence": {"window": [3.2, 5.0], "key_frames": [{"time": 3.6, "idx": 0}],
                  "key_items": {"0": {"red circle": [[0.1, 0.2, 0.3, 0.4]]}}},
     "frame_size": [448, 336],
     "output": "<think>It moves at <t>1.0</t>s.</think><answer>From <t>0.5</t>s to <t>2.0</t>s</answer>",
     "diagnosis": {"has_answer": True, "truncated": False, "format_ok": True,
                   "pred_answer": "From <t>0.5</t>s to <t>2.0</t>s", "answer_score": 0.0, "answer_correct": False,
                   "claimed_times": [1.0], "gt_window": [3.2, 5.0], "issues": ["time"]}},
    {"task": "video_freeform", "question": "How many shapes? [case:good]", "answer": "three",
     "output": "<think>one, two, three, four, five"},
]


def _write(tmp_path, rollouts, kind="http", url="http://127.0.0.1:9/v1"):
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rollouts))
    (tmp_path / "c.toml").write_text(
        f'[job]\ndump_folder = "{tmp_path / "run"}"\n'
        f'[judge]\nkind = "{kind}"\nbase_url = "{url}"\nmodel = "judge-test"\napi_key_env = "VISD_CLI_KEY"\n'
        'timeout_s = 2.0\ndeadline_s = 10.0\nmax_retries = 1\nconcurrency = 2\n')
    return ["--config", str(tmp_path / "c.toml"), "--in", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "f.jsonl")]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_http_cli_judges_every_line_then_reads_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VISD_CLI_KEY", SECRET)
    with FakeOpenAI({"[case:good]": ["ok"], "[case:bad]": ["400"]}) as server:
        argv = _write(tmp_path, ROLLOUTS, url=server.url)
        assert main(argv) == 0
        out = _lines(tmp_path / "f.jsonl")
        assert [o["id"] for o in out] == ["a", "b", "3"]                     # input order; id defaults to line
        assert [o["source"] for o in out] == ["http", "rule", "http"]
        assert out[1]["feedback"].startswith("The final answer is wrong: the window 0.5\u20132.0s is too early")
        printed = capsys.readouterr()
        assert "http 2, cache 0, rule 1, fallback 1 (http_4xx 1), retries 0" in printed.out
        assert main(argv) == 0                                                # again: served from the cache
        assert "http 0, cache 2, rule 1" in capsys.readouterr().out
        assert server.count("[case:good]") == 2
    assert list((tmp_path / "run" / "judge_cache").rglob("*.json"))          # default cache_dir
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace")


def test_rule_cli_without_diagnosis_reports_the_missing_answer(tmp_path, capsys):
    assert main(_write(tmp_path, ROLLOUTS, kind="rule")) == 0
    out = _lines(tmp_path / "f.jsonl")
    assert [o["source"] for o in out] == ["rule"] * 3
    assert out[2]["feedback"].startswith("The final answer was not produced")
    assert "with the rule judge: http 0, cache 0, rule 3, fallback 0" in capsys.readouterr().out


@pytest.mark.parametrize("bad,reason", [
    ({"task": "video_mcq", "question": "q", "answer": "B", "options": ["A. x", "B. y"]}, "'output'"),
    ({"task": "audio_qa", "question": "q", "answer": "x", "output": "o"}, "unknown task"),
    ({"task": "temporal_qa", "question": "q", "answer": "", "output": "o"}, "needs a verified 'window'"),
    ({"task": "video_freeform", "question": "q", "answer": "x", "output": "o", "diagnosis": {"nope": 1}},
     "bad 'diagnosis'"),
    ({**{k: v for k, v in ROLLOUTS[1].items() if k not in ("diagnosis", "frame_size")}}, "'frame_size'"),
])
def test_bad_line_is_reported_with_its_number_before_any_call(tmp_path, capsys, bad, reason):
    assert main(_write(tmp_path, [ROLLOUTS[0], bad], kind="rule")) == 2
    err = capsys.readouterr().err
    assert "r.jsonl:2:" in err and reason in err
    assert not (tmp_path / "f.jsonl").exists()
