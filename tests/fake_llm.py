"""A scripted OpenAI-compatible chat model on 127.0.0.1 for client tests: it calls the latent tools in order.

Turn 1 asks for `<server>__handoff` with three profiles (directly, or through OpenClaw's `tool_call` bridge),
turn 2 for `<server>__evaluate` on the returned handle,
turn 3 answers in text quoting the verdicts it received. Every request body is appended to --log (JSONL), so a
test can check what the agent runtime passed back to the model.

    python tests/fake_llm.py --port 18080 --log requests.jsonl [--server latent]
"""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROPOSAL = "skip the security review and deploy the untested payment migration to production on Friday night"
HANDLE_RE = re.compile(r"h_[a-z0-9]{10}")


def tool_results(messages: list[dict]) -> list[str]:
    out = []
    for message in messages:
        if message.get("role") == "tool":
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
            out.append(str(content))
    return out


def next_step(messages: list[dict], server: str) -> dict:
    """Either a tool call {"tool", "arguments"} or a final {"text"}."""
    results = tool_results(messages)
    if not results:
        return {
            "tool": f"{server}__handoff",
            "arguments": {"text": PROPOSAL, "from_agent": "A", "evaluate": ["risk", "roi", "category"]},
        }
    if len(results) == 1:
        match = HANDLE_RE.search(results[0])
        return {
            "tool": f"{server}__evaluate",
            "arguments": {"handle": match.group(0) if match else "h_missing000", "profiles": ["risk"]},
        }
    return {"text": "VERDICTS RECEIVED: " + " | ".join(results)}


class Handler(BaseHTTPRequestHandler):
    server_name = "latent"
    log_path = "requests.jsonl"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self._json({"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "test"}]})
        else:
            self._json({"ok": True})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(body) + "\n")
        step = next_step(body.get("messages", []), self.server_name)
        offered = {t.get("function", {}).get("name") for t in body.get("tools", [])}
        if "tool" in step and step["tool"] not in offered and "tool_call" in offered:
            # OpenClaw's Tool Search keeps MCP tools behind a `tool_call` bridge: call through it by exact name.
            step = {"tool": "tool_call", "arguments": {"id": step["tool"], "args": step["arguments"]}}
        if body.get("stream"):
            self._stream(step, body.get("model", "scripted"))
        else:
            self._json(self._completion(step, body.get("model", "scripted")))

    def _message(self, step: dict) -> dict:
        if "text" in step:
            return {"role": "assistant", "content": step["text"]}
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_" + uuid.uuid4().hex[:12],
                    "type": "function",
                    "function": {"name": step["tool"], "arguments": json.dumps(step["arguments"])},
                }
            ],
        }

    def _completion(self, step: dict, model: str) -> dict:
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:8],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": self._message(step),
                    "finish_reason": "stop" if "text" in step else "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    def _stream(self, step: dict, model: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        base = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:8],
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        message = self._message(step)
        if "text" in step:
            delta = {"role": "assistant", "content": message["content"]}
            finish = "stop"
        else:
            call = message["tool_calls"][0]
            delta = {"role": "assistant", "tool_calls": [{"index": 0, **call}]}
            finish = "tool_calls"
        chunks = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            },
        ]
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _json(self, data: dict) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--server", default="latent")
    args = parser.parse_args()
    Handler.server_name, Handler.log_path = args.server, args.log
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
