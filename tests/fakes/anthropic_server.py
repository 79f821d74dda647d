"""A loopback stand-in for the Anthropic Messages API, spoken over real HTTP.

The real `anthropic` SDK is pointed at it through `ANTHROPIC_BASE_URL`, in the test process or in
a Celery worker subprocess, so retries, timeouts, error mapping and the wire shapes are exercised
exactly as in production. Tests script the model's replies:

    server.enqueue(tool_use("calculator", {"expression": "2+2"}), text("It is 4."))
    server.enqueue(overloaded(), text("Recovered."))            # one 529, then success
    server.enqueue(text("For run A"), when="unique goal text")   # only for requests mentioning it

Replies are served first-in, first-out; a reply enqueued `when=` some text is only served to a
request whose body contains that text (so concurrent runs each get their own script). With nothing
queued the server answers "Done." so a stray call ends a run instead of hanging it.

Requests are validated roughly like the real API does: an API key (as `x-api-key`, or as the
`Authorization: Bearer` header SDK 2.x sends), the version header, required fields, non-empty
content, and every `tool_use` answered by a `tool_result` in the next message. So a malformed
conversation fails here the way it would against Claude.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "NO_INPUT",
    "Delay",
    "Disconnect",
    "Error",
    "FakeAnthropicServer",
    "Message",
    "RecordedRequest",
    "Reply",
    "delay",
    "disconnect",
    "error",
    "overloaded",
    "rate_limited",
    "text",
    "tool_use",
    "tool_uses",
]

DEFAULT_MODELS = ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_ID_ALPHABET = string.ascii_letters + string.digits


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


# --- Scripted replies -------------------------------------------------------------------------


class _NoInput:
    def __repr__(self) -> str:
        return "NO_INPUT"


NO_INPUT: Any = _NoInput()
"""Pass as a tool_use `input` to leave the field out of the block entirely (a malformed reply)."""


@dataclass(frozen=True)
class Message:
    """A successful assistant message. Token counts default to rough estimates from the sizes."""

    content: tuple[dict[str, Any], ...]
    stop_reason: str = "end_turn"
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Error:
    status: int
    type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` before answering with `reply` (for timeouts, cancellation, concurrency)."""

    seconds: float
    reply: Reply


@dataclass(frozen=True)
class Disconnect:
    """Drop the connection without answering (the SDK sees a connection error)."""


Reply = Message | Error | Delay | Disconnect


def text(content: str, *, input_tokens: int | None = None, output_tokens: int | None = None,
         stop_reason: str = "end_turn") -> Message:
    return Message(
        content=({"type": "text", "text": content},),
        stop_reason=stop_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def _tool_use_block(name: str, input: Any, id: str | None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_use", "id": id or _new_id("toolu_"), "name": name}
    if input is not NO_INPUT:
        block["input"] = input
    return block


def tool_use(name: str, input: Any, text: str = "", *, id: str | None = None,
             input_tokens: int | None = None, output_tokens: int | None = None) -> Message:
    """The model asks for one tool. `input` is sent as given, so it may deliberately be malformed."""
    return tool_uses([(name, input)], text=text, ids=[id] if id else None,
                     input_tokens=input_tokens, output_tokens=output_tokens)


def tool_uses(calls: Iterable[tuple[str, Any]], text: str = "", *, ids: list[str] | None = None,
              input_tokens: int | None = None, output_tokens: int | None = None) -> Message:
    """The model asks for several tools in one turn (parallel tool use)."""
    calls = list(calls)
    chosen_ids: list[str | None] = list(ids) if ids else [None] * len(calls)
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    blocks += [_tool_use_block(name, arguments, call_id) for (name, arguments), call_id in zip(calls, chosen_ids,
                                                                                             strict=True)]
    return Message(content=tuple(blocks), stop_reason="tool_use", input_tokens=input_tokens,
                   output_tokens=output_tokens)


def error(status: int, type: str, message: str, headers: dict[str, str] | None = None) -> Error:
    return Error(status=status, type=type, message=message, headers=dict(headers or {}))


def overloaded(retry_after_ms: int | None = None) -> Error:
    """A 529. `retry_after_ms` makes the SDK retry after that long instead of its ~0.5-8s backoff."""
    headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    return error(529, "overloaded_error", "Overloaded", headers)


def rate_limited(retry_after_ms: int | None = None) -> Error:
    headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    return error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", headers)


def delay(seconds: float, reply: Reply) -> Delay:
    return Delay(seconds=seconds, reply=reply)


def disconnect() -> Disconnect:
    return Disconnect()


# --- What the server saw ----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # the decoded JSON body, or None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages") or [])

    @property
    def system(self) -> str:
        system = (self.body or {}).get("system") or ""
        if isinstance(system, list):
            return "".join(block.get("text", "") for block in system if isinstance(block, dict))
        return system

    @property
    def tool_names(self) -> list[str]:
        return [tool.get("name") for tool in (self.body or {}).get("tools") or []]

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """Every tool_result block in the conversation, oldest first."""
        return [
            block
            for message in self.messages
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]


# --- Request validation, approximating the real API's answers -----------------------------------


def _validate_messages_request(body: Any) -> str | None:
    """The real API's invalid_request_error message for this body, or None if it is acceptable."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    if isinstance(body["max_tokens"], bool) or not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    if "system" in body and not isinstance(body["system"], str | list):
        return "system: Input should be a valid string"
    tools_problem = _validate_tools(body.get("tools"))
    if tools_problem:
        return tools_problem
    return _validate_conversation(body["messages"])


def _validate_tools(tools: Any) -> str | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            return f"tools.{index}: Input should be a valid dictionary"
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            return f"tools.{index}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
        if name in seen:
            return "tools: Tool names must be unique."
        seen.add(name)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            return f"tools.{index}.custom.input_schema: Field required"
        if schema.get("type") != "object":
            return f"tools.{index}.custom.input_schema.type: Input should be 'object'"
    return None


def _validate_conversation(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    last = len(messages) - 1
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{index}: Input should be a valid dictionary"
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if content is None:
            return f"messages.{index}.content: Field required"
        if content == "" or content == []:
            if role == "assistant" and index == last:
                continue
            return (
                f"messages.{index}: all messages must have non-empty content "
                "except for the optional final assistant message"
            )
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"messages.{index}.content: Input should be a valid string or list"
        for position, block in enumerate(content):
            where = f"messages.{index}.content.{position}"
            if not isinstance(block, dict) or "type" not in block:
                return f"{where}: Input should be a valid content block"
            kind = block["type"]
            if kind == "text":
                if not isinstance(block.get("text"), str) or not block["text"]:
                    return "messages: text content blocks must be non-empty"
            elif kind == "tool_use":
                if role != "assistant":
                    return f"{where}: tool_use blocks can only appear in assistant messages"
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                    return f"{where}.tool_use: `id` and `name` are required"
                if not isinstance(block.get("input"), dict):
                    return f"{where}.tool_use.input: Input should be a valid dictionary"
            elif kind == "tool_result":
                if role != "user":
                    return f"{where}: tool_result blocks can only appear in user messages"
                if not isinstance(block.get("tool_use_id"), str):
                    return f"{where}.tool_result.tool_use_id: Field required"
                if "is_error" in block and not isinstance(block["is_error"], bool):
                    return f"{where}.tool_result.is_error: Input should be a valid boolean"
                if not isinstance(block.get("content", ""), str | list):
                    return f"{where}.tool_result.content: Input should be a valid string or list"
    return _validate_tool_pairing(messages)


def _block_ids(message: dict[str, Any], kind: str, key: str) -> list[str]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [block[key] for block in content if block.get("type") == kind]


def _validate_tool_pairing(messages: list[dict[str, Any]]) -> str | None:
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            asked = _block_ids(message, "tool_use", "id")
            if not asked:
                continue
            following = messages[index + 1] if index + 1 < len(messages) else None
            answered = set(_block_ids(following, "tool_result", "tool_use_id")) if following else set()
            missing = [call_id for call_id in asked if call_id not in answered]
            if missing:
                return (
                    f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                    "in the next message."
                )
        else:
            answered = _block_ids(message, "tool_result", "tool_use_id")
            if not answered:
                continue
            previous = messages[index - 1] if index > 0 else None
            asked_before = set(_block_ids(previous, "tool_use", "id")) if previous else set()
            for position, call_id in enumerate(answered):
                if call_id not in asked_before:
                    return (
                        f"messages.{index}.content.{position}: unexpected `tool_use_id` found in `tool_result` "
                        f"blocks: {call_id}. Each `tool_result` block must have a corresponding `tool_use` block "
                        "in the previous message."
                    )
    return None


# --- The server -------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeAnthropicServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the SDK's pooled connections expect
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.fake._handle(self)

    def do_POST(self) -> None:  # noqa: N802
        self.server.fake._handle(self)


class FakeAnthropicServer:
    def __init__(self, *, api_key: str | None = None, models: Iterable[str] = DEFAULT_MODELS) -> None:
        """`api_key`, when given, is the only key accepted (others get 401); otherwise any key is."""
        self.api_key = api_key
        self.models = tuple(models)
        self.default_reply: Reply = text("Done.")
        self._condition = threading.Condition()
        self._queue: deque[Reply] = deque()
        self._routed: list[tuple[str, deque[Reply]]] = []
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> FakeAnthropicServer:
        if self._httpd is not None:
            raise RuntimeError("FakeAnthropicServer is already running")
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        # A short poll interval keeps stop() (and so every test using the fake) fast.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a Delay
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL for ANTHROPIC_BASE_URL; the SDK appends `/v1/messages` itself."""
        if self._httpd is None:
            raise RuntimeError("FakeAnthropicServer is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # scripting

    def enqueue(self, *replies: Reply, when: str | None = None) -> None:
        """Queue replies in order; with `when`, only for requests whose JSON body contains that text."""
        with self._condition:
            if when is None:
                self._queue.extend(replies)
                return
            for marker, queue in self._routed:
                if marker == when:
                    queue.extend(replies)
                    return
            self._routed.append((when, deque(replies)))

    def reset(self) -> None:
        """Forget queued replies and recorded requests, and restore the default "Done." answer."""
        with self._condition:
            self._queue.clear()
            self._routed.clear()
            self._requests.clear()
            self.default_reply = text("Done.")

    @property
    def pending(self) -> int:
        """How many scripted replies have not been served yet."""
        with self._condition:
            return len(self._queue) + sum(len(queue) for _, queue in self._routed)

    # inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a snapshot)."""
        with self._condition:
            return list(self._requests)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Only the POST /v1/messages calls."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least `count` requests arrived (e.g. a worker is now inside a model call)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = len(self._requests)
                    raise TimeoutError(f"expected {count} requests to the fake Anthropic API, got {seen}")
                self._condition.wait(remaining)
            return list(self._requests)

    # serving

    def _handle(self, handler: _Handler) -> None:
        path = handler.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in handler.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body: Any = None
        parse_failed = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                parse_failed = True
        recorded = RecordedRequest(method=handler.command, path=path, headers=headers, body=body)
        with self._condition:
            self._requests.append(recorded)
            self._condition.notify_all()

        problem = self._authenticate(headers)
        if problem:
            self._send_error(handler, problem)
            return
        if handler.command == "GET" and path == "/v1/models":
            self._send_json(handler, 200, self._models_page())
            return
        if handler.command == "GET" and path.startswith("/v1/models/"):
            model_id = path.removeprefix("/v1/models/")
            if model_id in self.models:
                self._send_json(handler, 200, self._model(model_id))
            else:
                self._send_error(handler, error(404, "not_found_error", f"model: {model_id}"))
            return
        if not (handler.command == "POST" and path == "/v1/messages"):
            self._send_error(handler, error(404, "not_found_error", "Not Found"))
            return
        if parse_failed or not raw:
            self._send_error(handler, error(400, "invalid_request_error",
                                            "There was an error parsing the body of your request as JSON."))
            return
        invalid = _validate_messages_request(body)
        if invalid:
            self._send_error(handler, error(400, "invalid_request_error", invalid))
            return
        self._serve(handler, self._next_reply(body), body, raw)

    def _authenticate(self, headers: dict[str, str]) -> Error | None:
        # SDK 2.x sends the key as a bearer token; older clients and curl use x-api-key.
        key = headers.get("x-api-key")
        authorization = headers.get("authorization", "")
        if not key and authorization.lower().startswith("bearer "):
            key = authorization[len("bearer "):].strip()
        if not key:
            return error(401, "authentication_error", "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return error(401, "authentication_error", "invalid x-api-key")
        if not headers.get("anthropic-version"):
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        searchable = json.dumps(body, ensure_ascii=False)
        with self._condition:
            for marker, queue in self._routed:
                if queue and marker in searchable:
                    return queue.popleft()
            if self._queue:
                return self._queue.popleft()
            return self.default_reply

    def _serve(self, handler: _Handler, reply: Reply, body: dict[str, Any], raw: bytes) -> None:
        while isinstance(reply, Delay):
            if self._stopping.wait(reply.seconds):
                handler.close_connection = True
                return
            reply = reply.reply
        if isinstance(reply, Disconnect):
            handler.close_connection = True
            return
        if isinstance(reply, Error):
            self._send_error(handler, reply)
            return
        content = [dict(block) for block in reply.content]
        self._send_json(handler, 200, {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.input_tokens if reply.input_tokens is not None else max(1, len(raw) // 4),
                "output_tokens": (
                    reply.output_tokens if reply.output_tokens is not None else max(1, len(json.dumps(content)) // 4)
                ),
            },
        })

    def _model(self, model_id: str) -> dict[str, Any]:
        return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-01-01T00:00:00Z"}

    def _models_page(self) -> dict[str, Any]:
        data = [self._model(model_id) for model_id in self.models]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def _send_error(self, handler: _Handler, reply: Error) -> None:
        request_id = _new_id("req_")
        payload = {"type": "error", "error": {"type": reply.type, "message": reply.message}, "request_id": request_id}
        self._send_json(handler, reply.status, payload, {"request-id": request_id, **reply.headers})

    def _send_json(self, handler: _Handler, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        headers = dict(headers or {})
        headers.setdefault("request-id", _new_id("req_"))
        try:
            handler.send_response(status, _reason(status))
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired); nothing is listening for this answer.
            handler.close_connection = True


def _reason(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
