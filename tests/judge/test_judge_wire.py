"""Strict parsing of chat-completions replies: the single key "feedback", fences tolerated, capped."""
import json

import pytest

from visd_core.judge.wire import (MAX_FEEDBACK_CHARS, BadReply, EmptyContent, parse_feedback, parse_reply,
                                  request_body)


def _reply(content, finish_reason: str = "stop") -> bytes:
    return json.dumps({"choices": [{"finish_reason": finish_reason,
                                    "message": {"role": "assistant", "content": content}}]}).encode()


@pytest.mark.parametrize("content", [
    '{"feedback": "The answer is wrong."}',
    '```json\n{"feedback": "The answer is wrong."}\n```',
    '```\n{"feedback": "The answer is wrong."}\n```',
    '  {"feedback": "The answer   is\\nwrong."}  ',
])
def test_accepts_the_feedback_object(content):
    assert parse_reply(_reply(content)) == "The answer is wrong."


@pytest.mark.parametrize("content,match", [
    ("The answer is wrong.", "not JSON"),
    ('{"feedback": "x", "score": 1}', 'single key "feedback"'),
    ('{"verdict": "wrong"}', 'single key "feedback"'),
    ('["feedback"]', 'single key "feedback"'),
    ('{"feedback": ""}', "non-empty string"),
    ('{"feedback": 3}', "non-empty string"),
    ('Sure! {"feedback": "x"}', "not JSON"),
])
def test_rejects_anything_else(content, match):
    with pytest.raises(BadReply, match=match):
        parse_feedback(content)


@pytest.mark.parametrize("body,match", [
    (b"<html>502</html>", "body is not JSON"),
    (b'{"error": {"message": "overloaded"}}', "no choices"),
    (b'{"choices": []}', "no choices"),
    (_reply(3), "content must be a string"),
])
def test_rejects_malformed_bodies(body, match):
    with pytest.raises(BadReply, match=match):
        parse_reply(body)


@pytest.mark.parametrize("content", ["", None, "  \n"])
def test_empty_content_is_its_own_error(content):
    # A reasoning model that spent its whole budget on reasoning answers 200 with nothing in it.
    with pytest.raises(EmptyContent, match="empty message content \\(finish_reason 'length'\\)"):
        parse_reply(_reply(content, "length"))
    with pytest.raises(BadReply) as e:
        parse_reply(_reply('{"verdict": "x"}'))
    assert not isinstance(e.value, EmptyContent)


def test_feedback_is_capped():
    long = "word " * 400
    out = parse_feedback(json.dumps({"feedback": long}))
    assert len(out) <= MAX_FEEDBACK_CHARS and long.startswith(out)


def test_request_body_is_chat_completions():
    body = json.loads(request_body("m", "sys", "usr", 0.0, 256))
    assert body == {"model": "m", "messages": [{"role": "system", "content": "sys"},
                                               {"role": "user", "content": "usr"}],
                    "temperature": 0.0, "max_tokens": 256}
    gpt5 = json.loads(request_body("m", "sys", "usr", 1.0, 256, "max_completion_tokens"))
    assert gpt5["max_completion_tokens"] == 256 and "max_tokens" not in gpt5
    assert "reasoning_effort" not in gpt5
    low = json.loads(request_body("m", "sys", "usr", 1.0, 2048, "max_completion_tokens", "low"))
    assert low["reasoning_effort"] == "low"
