import time

import pytest

from visd_core.rewards.parse import (parse_box, parse_claims, parse_completion, parse_correct_option, parse_interval,
                                     parse_letter, parse_time)

GOOD = ("<think>The <obj>red circle</obj><box>[45,34,134,101]</box>at<t>1.0</t>s moves right; at <t>4.5</t>s "
        "<obj>red circle</obj><box>[90, 34, 179, 101]</box> <box>[224,168,403,302]</box> at <t>4.5</t>s.</think>"
        "\n<answer>From <t>2.0</t>s to <t>5.5</t>s\nCorrect Option: (B)</answer>\n")


def test_well_formed_completion():
    c = parse_completion(GOOD)
    assert c.issues == [] and not c.truncated
    assert c.think_times == [1.0, 4.5, 4.5]
    assert [(cl.obj, cl.time, len(cl.boxes)) for cl in c.claims] == [("red circle", 1.0, 1), ("red circle", 4.5, 2)]
    assert c.claims[1].boxes[1] == (224.0, 168.0, 403.0, 302.0)
    assert len(c.think_boxes) == 3
    assert c.answer_interval == (2.0, 5.5)
    assert c.correct_option == "B"


@pytest.mark.parametrize("text,issue", [
    ("<answer>B</answer>", "missing <think>"),
    ("<think>x</think>", "missing <answer> (no final answer)"),
    ("<think>x</think><answer>  </answer>", "empty <answer> (no final answer)"),
    ("<think>x</think><answer>B</answer><answer>C</answer>", "more than one <answer> block"),
    ("<think>x</think></think><answer>B</answer>", "stray </think>"),
    ("<answer>B</answer><think>x</think>", "<answer> before </think>"),
    ("<think>x</think>B<answer>B</answer>", "text outside <think>/<answer>"),
    ("<think><obj>cat</think><answer>B</answer>", "unbalanced <obj> tags"),
    ("<think><obj>a<box>[1,2,3,4]</box></obj></think><answer>B</answer>", "unbalanced <obj> tags"),
    ("<think><obj>a</obj><box>[1,2,3]</box></think><answer>B</answer>", "malformed box (need [x1,y1,x2,y2]"),
    ("<think>at <t>soon</t>s</think><answer>B</answer>", "malformed timestamp (need <t>seconds</t>)"),
    ("<think>x</think><answer>B", "unclosed <answer> (output truncated)"),
    ("<think>x <answer>B</answer>", "unclosed <think>"),
])
def test_format_diagnostics(text, issue):
    assert any(i.startswith(issue) for i in parse_completion(text).issues)


def test_truncated_inside_think_or_answer():
    c = parse_completion("<think>The <obj>red circle</obj><box>[45,34")
    assert c.truncated and c.think is None and c.answer is None
    assert c.issues[0] == "unclosed <think> (output truncated)"
    assert parse_completion("<think>x</think><answer>From <t>1</t>s").truncated
    assert not parse_completion("<think>x <answer>B</answer>").truncated     # closed answer: not cut off


def test_numbers_are_plain_non_negative_decimals():
    assert parse_time(" 3.5 ") == 3.5 and parse_time(".5") == 0.5 and parse_time("12.") == 12.0
    for bad in ["-1", "+2", "nan", "inf", "1e3", "1.2.3", "", "1,5", "9" * 10, "３"]:
        assert parse_time(bad) is None, bad
    assert parse_box("[ 1, 2.5 ,3,4 ]") == (1.0, 2.5, 3.0, 4.0)
    assert parse_box("[5,5,5,9]") == (5.0, 5.0, 5.0, 9.0)          # zero area is well-formed
    for bad in ["[1,2,3]", "[1,2,3,4,5]", "[-1,2,3,4]", "[5,5,1,1]", "1,2,3,4", "[1e9,0,1e9,1]", "[nan,0,1,1]"]:
        assert parse_box(bad) is None, bad


@pytest.mark.parametrize("text,letter", [
    ("B", "B"), ("B.", "B"), ("(B)", "B"), ("[B]", "B"), (" (B) the dog", "B"), ("B: jumps", "B"),
    ("B jumps", None), ("Both", None), ("b", None), ("", None),
])
def test_option_letter(text, letter):
    assert parse_letter(text) == letter


def test_correct_option_and_intervals():
    assert parse_correct_option("From <t>1</t>s to <t>2</t>s\nCorrect Option: [C]") == "C"
    assert parse_correct_option("correct option:D.") == "D"
    assert parse_correct_option("the option is B") is None
    assert parse_interval("From <t>3.2</t>s to <t>5.0</t>s") == (3.2, 5.0)
    assert parse_interval("from <t>3.2</t> to <t>5</t>") == (3.2, 5.0)
    assert parse_interval("between [3.2, 5.0] seconds") == (3.2, 5.0)
    assert parse_interval("From <t>7</t>s to <t>2</t>s") == (7.0, 2.0)       # inverted is kept; it scores 0
    assert parse_interval("From <t>x</t>s to <t>2</t>s, i.e. [1, 2]") == (1.0, 2.0)
    assert parse_interval("[1,2,3,4]") is None and parse_interval("no times") is None


def test_claims_need_a_box_and_keep_timeless_ones():
    claims = parse_claims("<obj>dog</obj> runs. <obj>cat</obj><box>[1,1,5,5]</box> sleeps; "
                          "<obj>cow</obj><box>[1,2]</box>at<t>3</t>s; <obj>owl</obj><box>[0,0,2,2]</box>AT <t>x</t>s")
    assert [(c.obj, c.time) for c in claims] == [("cat", None), ("owl", None)]


def test_megabyte_inputs_are_fast():
    mb = 1 << 20
    for text in ["<t>" * (mb // 3), "<obj>" + "</obj><box>" * (mb // 11), "[" * mb, "<think>" + " " * mb + "at",
                 "<think>" + "<obj>a</obj><box>[1,2,3,4]</box>at<t>1</t>s" * (mb // 40) + "</think><answer>x</answer>"]:
        t0 = time.process_time()
        parse_completion(text)
        assert time.process_time() - t0 < 2.0              # tens of ms normally; generous for shared CI
