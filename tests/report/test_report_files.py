"""The report from hand-written run folders: missing metrics, one step, a run still being written
(cut-off last line), no files at all, two runs overlaid, hostile text escaped, the token shading."""
import re

from tests.report.page import check_shading, credit_cards, write_run
from visd_core.report import write_report
from visd_core.report.__main__ import main

CONFIG = '[training]\nstage = "sft_then_rl"\nsft_steps = 2\nrl_steps = 8\n[algorithm]\nname = "visd"\n'


def rl_row(step: int, **extra) -> dict:
    return {"step": step, "stage": "rl", "reward/total": 0.1 * step, "answer/acc": 0.5, "visd/lambda": 0.5,
            "delta/abs_mean": 0.2, "token_weight/mean": 1.01, "time/step": 3.0, "time/rollout": 2.0,
            "time/update": 1.0, "mem/peak_mb": 800.0, **extra}


def record(step: int, rollout: int, **extra) -> dict:
    return {"step": step, "rl_step": step - 2, "rollout": rollout, "algorithm": "visd", "lambda": 0.5, "eps_w": 0.2,
            "id": "r7", "task": "mcq", "question": "Which <script>alert(1)</script> shape?", "options": ["A. <i>"],
            "answer": "A & B", "feedback": "box \"off\" at <t>2</t>", "completion": "", "reward": 1.0,
            "components": {"ans": 1.0, "thk_spa": None}, "advantage": 0.7,
            "tokens": ["<think>", "a\r\n", "", "<b>", "&amp;"], "delta": [0.3, -0.5, 0.0, 0.05, -0.01],
            "m": [1.2, 0.8, 1.0, 1.05, 0.99], "adv_scale": [1.1, 0.9, 1.0, 1.025, 0.995], "ratio": [1.0] * 5,
            "entropy": [0.5, 1.0, 0.0, 2.0, 0.1], "in_loss": [True] * 5, **extra}


def test_missing_keys_one_step_and_a_run_still_writing(tmp_path):
    run = write_run(tmp_path / "live", [{"step": 1, "stage": "sft", "sft/loss": 2.0},
                                        {"step": 3, "stage": "rl", "reward/total": "nan"},
                                        rl_row(3, **{"reward/total": 0.4})],
                    tail='{"step": 4, "stage": "rl", "rew', config=CONFIG)
    html = write_report([run]).read_text()
    assert (run / "report.html").is_file()
    assert "3 of 10 (running or stopped)" in html                # the cut-off line is skipped, not fatal
    assert html.count('<figure class="plot') >= 5 and "Total reward" in html
    assert "no validation metrics in this run" in html            # no val/* yet: said, not drawn
    assert "no token-credit records" in html


def test_a_folder_with_nothing_in_it_still_reports(tmp_path):
    (tmp_path / "empty").mkdir()
    html = write_report([tmp_path / "empty"], tmp_path / "out" / "r.html").read_text()
    assert "no metrics yet" in html and "no config.toml in this folder" in html
    assert "<figure" not in html


def test_two_runs_overlay_with_a_legend_and_a_config_diff(tmp_path):
    visd = write_run(tmp_path / "a" / "visd", [rl_row(s) for s in range(3, 11)], config=CONFIG)
    grpo_rows = [{k: v for k, v in rl_row(s).items() if not k.startswith(("delta/", "token_weight/"))}
                 for s in range(3, 11)]
    grpo = write_run(tmp_path / "b" / "grpo", grpo_rows, config=CONFIG.replace('"visd"', '"grpo"'))
    html = write_report([visd, grpo], tmp_path / "both.html").read_text()
    svg = re.search(r"<svg.*?</svg>", html[html.index("Total reward") - 3000:], re.S)[0]
    assert "visd (visd)" in svg and "grpo (grpo)" in svg           # the legend names both runs
    assert "algorithm.name" in html and "Where the configs differ" in html
    assert "Δ_t teacher−student log-ratio" in html                 # drawn from the run that has it


def test_credit_view_shades_by_the_recorded_m_and_escapes_text(tmp_path):
    recs = [record(5, 0), record(5, 3, advantage=-0.4, m=[0.8, 1.2, 1.0, 0.9, 1.1]), record(5, 3, rank=1),
            record(7, 2, advantage=0.0, m=[1.0] * 5), record(9, 1, **{"lambda": 0.0})]
    run = write_run(tmp_path / "r", [rl_row(s) for s in range(3, 10)], config=CONFIG,
                    credit={5: recs[:3], 7: recs[3:4], 9: recs[4:]})
    html = write_report([run]).read_text()
    assert check_shading(html, recs) == 25
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;" in html and "&amp;amp;" in html and "A &amp; B" in html
    # the default shading: m_t while λ > 0; Δ_t where A = 0 (every m_t is 1); entropy at λ = 0 (no teacher)
    cards = re.findall(r'<article class="rollout".*?</article>', html, re.S)
    checked = [re.search(r'class="s(\w)" name="[^"]+" id="[^"]+" checked', c)[1] for c in cards]
    assert checked == ["m", "m", "m", "d", "h"]
    assert len(credit_cards(html)) == 5 and len(set(re.findall(r'name="(shade-[^"]+)"', html))) == 5


def test_credit_steps_are_spread_first_to_last(tmp_path):
    credit = {s: [record(s, 0)] for s in range(3, 13)}
    run = write_run(tmp_path / "r", [rl_row(s) for s in range(3, 13)], config=CONFIG, credit=credit)
    html = write_report([run], credit_steps=3).read_text()
    assert [c["step"] for c in credit_cards(html)] == [3, 7, 12]
    assert len(credit_cards(write_report([run], credit_steps=0).read_text())) == 10


def test_cli(tmp_path, capsys):
    run = write_run(tmp_path / "r", [rl_row(3)], config=CONFIG)
    assert main([str(run), "--out", str(tmp_path / "x.html")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "x.html")
    assert (tmp_path / "x.html").read_text().startswith("<!DOCTYPE html>")
    assert main([str(tmp_path / "nope")]) == 2
