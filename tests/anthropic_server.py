"""A real server on 127.0.0.1 speaking Anthropic's Messages API, for testing LLM clients.

``with MessagesServer(reply) as server:`` serves ``POST /v1/messages`` on ``server.url`` and
checks each request as Anthropic's API does before ``reply(request_json) -> (status, headers,
body)`` answers it: an ``x-api-key`` header (else 401 ``authentication_error``), an
``anthropic-version`` header, ``model``, ``messages`` and ``max_tokens`` present, a temperature
from 0 to 1, and no field the API does not define: ``seed`` or ``response_format`` are refused
with 400 ``invalid_request_error`` "seed: Extra inputs are not permitted", as the real API
refuses them. ``message(text)`` builds a reply's body, ``error(...)`` an error's.
"""

from __future__ import annotations

from openai_server import ChatServer

# the top-level fields of a Messages request
FIELDS = set(
    "model messages max_tokens system temperature top_p top_k stop_sequences stream metadata tools tool_choice thinking "
    "service_tier container mcp_servers context_management".split()
)


def message(text: str, input_tokens: int = 20, output_tokens: int = 30, stop_reason: str = "end_turn") -> dict:
    """A Messages response body whose one content block says ``text``."""
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def error(status: int, kind: str, text: str) -> tuple[int, dict, dict]:
    return status, {}, {"type": "error", "error": {"type": kind, "message": text}}


def refusal(path: str, headers, body: dict) -> tuple[int, dict, dict] | None:
    """The error Anthropic's API answers this request with, or None for a well-formed one."""
    if path.split("?")[0] != "/v1/messages":
        return error(404, "not_found_error", f"Not found: {path}")
    if not headers.get("x-api-key"):
        return error(401, "authentication_error", "x-api-key header is required")
    if not headers.get("anthropic-version"):
        return error(400, "invalid_request_error", "anthropic-version: header is required")
    for field in ("model", "messages", "max_tokens"):
        if field not in body:
            return error(400, "invalid_request_error", f"{field}: Field required")
    for field in sorted(body):
        if field not in FIELDS:
            return error(400, "invalid_request_error", f"{field}: Extra inputs are not permitted")
    if not 0 <= body.get("temperature", 1) <= 1:
        return error(400, "invalid_request_error", "temperature: Input should be less than or equal to 1")
    return None


class MessagesServer(ChatServer):
    def __init__(self, reply):
        super().__init__(reply)
        self.url = self.url.removesuffix("/v1")  # litellm appends /v1/messages to an Anthropic API base

    def respond(self, path: str, headers, body: dict) -> tuple[int, dict, dict]:
        return refusal(path, headers, body) or self.reply(body)
