"""The OpenAI chat-completions wire format of the HTTP judge: the request body and strict reply parsing.

A reply is accepted only when the assistant message is a JSON object with the single key
"feedback" holding a non-empty string (G.1 "Return strict JSON only with key: feedback"); a
```json fenced block around it is tolerated because chat models add one despite the instruction.
The VP-Selector's proxy reasoners use the envelope alone: `chat_body` (image parts in the user
message) and `parse_content`.
"""
from __future__ import annotations

import json
import re

MAX_FEEDBACK_CHARS = 1000        # issue 6: feedback capped at 1,000 characters

_FENCE = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?```$", re.DOTALL)


class BadReply(ValueError):
    """The endpoint answered 200 but not with usable feedback; the message says what was wrong."""


class EmptyContent(BadReply):
    """The assistant message is empty or null: a reasoning model spent the whole token budget on
    hidden reasoning (finish_reason "length"), or the endpoint filtered the reply."""


def request_body(model: str, system: str, user: str, temperature: float, max_tokens: int,
                 max_tokens_field: str = "max_tokens", reasoning_effort: str = "") -> bytes:
    """`max_tokens_field`: OpenAI's reasoning models (GPT-5.x) reject "max_tokens" and want
    "max_completion_tokens"; vLLM and most local servers take "max_tokens". `reasoning_effort` is
    sent only when set: servers without reasoning reject the field."""
    return chat_body(model, [{"role": "system", "content": system}, {"role": "user", "content": user}],
                     temperature, max_tokens, max_tokens_field, reasoning_effort)


def chat_body(model: str, messages: list[dict], temperature: float, max_tokens: int,
              max_tokens_field: str = "max_tokens", reasoning_effort: str = "") -> bytes:
    """The request body for any messages (a user content may be a list of text / image_url parts)."""
    body = {"model": model, "messages": messages, "temperature": temperature, max_tokens_field: max_tokens}
    if reasoning_effort:
        body["reasoning_effort"] = reasoning_effort
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def parse_feedback(content: str) -> str:
    """The feedback from an assistant message (BadReply unless it is exactly {"feedback": "..."})."""
    text = content.strip()
    m = _FENCE.match(text)
    if m:
        text = m.group(1).strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        raise BadReply(f"assistant message is not JSON: {_excerpt(text)}") from None
    if not isinstance(obj, dict) or set(obj) != {"feedback"}:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise BadReply(f'assistant JSON must have the single key "feedback", got {keys}')
    fb = obj["feedback"]
    if not isinstance(fb, str) or not fb.strip():
        raise BadReply('"feedback" must be a non-empty string')
    return " ".join(fb.split())[:MAX_FEEDBACK_CHARS].rstrip()


def parse_reply(body: bytes) -> str:
    """The feedback from a chat-completions response body (BadReply on any deviation)."""
    return parse_feedback(parse_content(body))


def parse_content(body: bytes) -> str:
    """The assistant message of a chat-completions response body (BadReply / EmptyContent)."""
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadReply(f"response body is not JSON: {_excerpt(body.decode('utf-8', 'replace'))}") from None
    try:
        choice = obj["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise BadReply("response has no choices[0].message.content") from None
    if content is None or (isinstance(content, str) and not content.strip()):
        raise EmptyContent(f"empty message content (finish_reason {choice.get('finish_reason')!r}); a reasoning "
                           "model may have spent judge.max_tokens on reasoning")
    if not isinstance(content, str):
        raise BadReply(f"message content must be a string, got {type(content).__name__}")
    return content


def _excerpt(text: str, n: int = 80) -> str:
    return repr(text[:n] + ("..." if len(text) > n else ""))
