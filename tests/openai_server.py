"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for testing LLM clients.

``with ChatServer(reply) as server:`` serves ``POST /v1/chat/completions`` (and
``/chat/completions``) on ``server.url``; ``reply(request_json) -> (status, headers, body)``
decides each answer (``body`` a dict is sent as JSON). ``server.requests`` records the request
bodies, ``server.headers`` their headers, ``server.paths`` the paths posted to. A subclass that
speaks another provider's API overrides ``respond`` (``anthropic_server.MessagesServer``).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content: str, prompt_tokens: int = 20, completion_tokens: int = 30, model: str = "gpt-4o-mini") -> dict:
    """A chat-completions response body whose one choice says ``content``."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ChatServer:
    def __init__(self, reply):
        self.reply = reply
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                server.paths.append(self.path)
                status, headers, payload = server.respond(self.path, self.headers, body)
                data = json.dumps(payload).encode() if isinstance(payload, dict) else str(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def respond(self, path: str, headers, body: dict) -> tuple[int, dict, dict]:
        return self.reply(body)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
