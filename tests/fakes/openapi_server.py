"""A loopback HTTP API described by an OpenAPI document, for the HTTP/OpenAPI connector's tests.

The API is a small pet store in the shape of the OpenAPI Initiative's petstore example
(https://learn.openapis.org/examples/): `GET /pets?limit=&tag=`, `POST /pets`, `GET/DELETE
/pets/{petId}`, plus `GET /me` to check a key. Errors answer the example's `Error` object
`{"code", "message"}`. Every request must carry the API key (in the `X-API-Key` header, or in a
query parameter when the server is started with `key_in="query"`); without it the answer is 401.

Tests read what arrived (`server.requests`) and script replies ahead of the real ones:

    server.enqueue(429, {"code": 429, "message": "slow down"}, headers={"Retry-After": "1"})

`document(server.url)` is the API's OpenAPI 3.1 document (references through components, a
shared path parameter, a JSON request body and the apiKey security scheme).

Started with `auth="oauth"` it is also its own OAuth 2.0 authorization server (RFC 6749 + PKCE,
RFC 7636): `approve(authorize_url)` plays the person clicking "Allow" and returns the redirect's
`code` and `state`; `POST /oauth/token` exchanges a code (checking the client, the redirect URI
and the S256 verifier) or a refresh token, and the API then wants `Authorization: Bearer`.
`oauth_document(url)` declares per-operation scopes (`pets:read`, `pets:write`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_KEY = "fake-api-key-0123456789"
CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret-0123456789"


@dataclass
class Recorded:
    method: str
    path: str  # percent-decoded
    raw_path: str  # as sent
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: FakeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        recorded = Recorded(method=self.command, path=unquote(parts.path), raw_path=parts.path,
                            query=parse_qs(parts.query, keep_blank_values=True),
                            headers={k.lower(): v for k, v in self.headers.items()}, body=body)
        self.server.record(recorded)
        if recorded.path == "/oauth/token" and self.command == "POST":
            status, answer = self.server.token(parse_qs(body.decode(), keep_blank_values=True))
            self._reply(status, answer, {"Cache-Control": "no-store"})
            return
        scripted = self.server.next_scripted()
        if scripted is not None:
            self._reply(scripted.status, scripted.body, scripted.headers)
            return
        if not self.server.authorized(recorded):
            self._reply(401, {"code": 401, "message": "Invalid or missing API key"})
            return
        self._route(recorded)

    def _route(self, request: Recorded) -> None:
        store = self.server.pets
        segments = [s for s in request.raw_path.split("/") if s]
        if segments == ["me"] and request.method == "GET":
            self._reply(200, {"name": "fake-account"})
        elif segments == ["pets"] and request.method == "GET":
            limit = int((request.query.get("limit") or ["100"])[0])
            tags = request.query.get("tag") or []
            pets = [p for p in store.values() if not tags or p.get("tag") in tags][:limit]
            self._reply(200, pets, {"x-next": ""})
        elif segments == ["pets"] and request.method == "POST":
            if "application/json" not in request.headers.get("content-type", ""):
                self._reply(415, {"code": 415, "message": "Send JSON"})
                return
            try:
                new = request.json()
            except ValueError:
                self._reply(400, {"code": 400, "message": "Malformed JSON"})
                return
            if not isinstance(new, dict) or not isinstance(new.get("name"), str):
                self._reply(400, {"code": 400, "message": "name is required"})
                return
            pet_id = max(store, default=0) + 1
            store[pet_id] = {"id": pet_id, "name": new["name"], **({"tag": new["tag"]} if "tag" in new else {})}
            self._reply(201, store[pet_id])
        elif len(segments) == 2 and segments[0] == "pets":
            pet_id = unquote(segments[1])
            pet = store.get(int(pet_id)) if pet_id.isdigit() else None
            if pet is None:
                self._reply(404, {"code": 404, "message": f"No pet {pet_id}"})
            elif request.method == "GET":
                self._reply(200, pet)
            elif request.method == "DELETE":
                del store[pet["id"]]
                self._reply(204)
            else:
                self._reply(405, {"code": 405, "message": "Method not allowed"})
        else:
            self._reply(404, {"code": 404, "message": "Not found"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()


class FakeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, key: str = API_KEY, key_in: str = "header", key_name: str = "X-API-Key",
                 auth: str = "key") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.key, self.key_in, self.key_name, self.auth = key, key_in, key_name, auth
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, tuple[str, ...]] = {}  # access token -> scopes
        self.refresh_tokens: dict[str, tuple[str, ...]] = {}
        self.requests: list[Recorded] = []
        self.pets: dict[int, dict[str, Any]] = {
            1: {"id": 1, "name": "Rex", "tag": "dog"},
            2: {"id": 2, "name": "Tom", "tag": "cat"},
            3: {"id": 3, "name": "Fido", "tag": "dog"},
        }
        self._scripted: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="fake-openapi", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def authorized(self, request: Recorded) -> bool:
        if self.auth == "oauth":
            header = request.headers.get("authorization", "")
            return header.startswith("Bearer ") and header[7:] in self.tokens
        if self.key_in == "query":
            return (request.query.get(self.key_name) or [""])[0] == self.key
        return request.headers.get(self.key_name.lower()) == self.key

    def record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def enqueue(self, status: int, body: Any = None, *, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._scripted.append(Scripted(status, body, dict(headers or {})))

    def next_scripted(self) -> Scripted | None:
        with self._lock:
            return self._scripted.popleft() if self._scripted else None

    # ------------------------------------------------------------------ OAuth 2.0
    def approve(self, authorize_url: str, *, grant: list[str] | None = None) -> dict[str, str]:
        """The person allows the request at `authorize_url`; the redirect's query (code, state).
        `grant` narrows the scopes (a provider may grant fewer than asked)."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        scopes = tuple(grant if grant is not None else query.get("scope", "").split())
        self.codes[code] = {"challenge": query["code_challenge"], "redirect_uri": query["redirect_uri"],
                            "scopes": scopes}
        return {"code": code, "state": query["state"]}

    def token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        field = {k: v[0] for k, v in form.items()}
        if field.get("client_id") != CLIENT_ID or field.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        if field.get("grant_type") == "authorization_code":
            issued = self.codes.pop(field.get("code", ""), None)
            if issued is None or issued["redirect_uri"] != field.get("redirect_uri"):
                return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
            digest = hashlib.sha256(field.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != issued["challenge"]:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
            scopes = issued["scopes"]
        elif field.get("grant_type") == "refresh_token":
            scopes = self.refresh_tokens.pop(field.get("refresh_token", ""), None)
            if scopes is None:
                return 400, {"error": "invalid_grant"}
        else:
            return 400, {"error": "unsupported_grant_type"}
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.tokens[access] = scopes
        self.refresh_tokens[refresh] = scopes
        return 200, {"access_token": access, "token_type": "Bearer", "expires_in": 3600, "refresh_token": refresh,
                     "scope": " ".join(scopes)}

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def document(url: str, *, key_in: str = "header", key_name: str = "X-API-Key") -> dict[str, Any]:
    """The fake's OpenAPI 3.1 document, with `url` as its server."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Swagger Petstore", "version": "1.0.0", "description": "A sample pet store."},
        "servers": [{"url": url}],
        "security": [{"apiKey": []}],
        "paths": {
            "/me": {
                "get": {"operationId": "whoAmI", "summary": "Who the key belongs to",
                        "responses": {"200": {"description": "The account"}}},
            },
            "/pets": {
                "get": {
                    "operationId": "listPets",
                    "summary": "List all pets",
                    "parameters": [
                        {"name": "limit", "in": "query", "description": "How many items to return at one time "
                                                                        "(max 100)",
                         "required": False, "schema": {"type": "integer", "maximum": 100, "format": "int32"}},
                        {"name": "tag", "in": "query", "description": "Only pets with these tags",
                         "schema": {"type": "array", "items": {"type": "string"}}},
                    ],
                    "responses": {
                        "200": {"description": "A paged array of pets",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pets"}}}},
                        "default": {"$ref": "#/components/responses/Error"},
                    },
                },
                "post": {
                    "operationId": "createPets",
                    "summary": "Create a pet",
                    "requestBody": {"$ref": "#/components/requestBodies/NewPet"},
                    "responses": {"201": {"description": "Created"},
                                  "default": {"$ref": "#/components/responses/Error"}},
                },
            },
            "/pets/{petId}": {
                "parameters": [{"$ref": "#/components/parameters/PetId"}],
                "get": {"operationId": "showPetById", "summary": "Info for a specific pet",
                        "parameters": [{"name": "include", "in": "query", "description": "Related data to include",
                                        "schema": {"type": "string", "enum": ["owner", "visits"]}}],
                        "responses": {"200": {"description": "Expected response to a valid request"}}},
                "delete": {"operationId": "deletePet", "summary": "Delete a pet",
                           "responses": {"204": {"description": "Deleted"}}},
            },
        },
        "components": {
            "parameters": {
                "PetId": {"name": "petId", "in": "path", "required": True, "description": "The id of the pet to "
                                                                                        "retrieve",
                          "schema": {"type": "string"}},
            },
            "requestBodies": {
                "NewPet": {"required": True, "description": "The pet to add",
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}}},
            },
            "responses": {
                "Error": {"description": "unexpected error",
                          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
            "schemas": {
                "NewPet": {"type": "object", "required": ["name"],
                           "properties": {"name": {"type": "string"}, "tag": {"type": "string"}}},
                "Pet": {"allOf": [{"$ref": "#/components/schemas/NewPet"},
                                  {"type": "object", "required": ["id"],
                                   "properties": {"id": {"type": "integer", "format": "int64"}}}]},
                "Pets": {"type": "array", "maxItems": 100, "items": {"$ref": "#/components/schemas/Pet"}},
                "Error": {"type": "object", "required": ["code", "message"],
                          "properties": {"code": {"type": "integer", "format": "int32"},
                                         "message": {"type": "string"}}},
            },
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": key_in, "name": key_name}},
        },
    }


def oauth_document(url: str) -> dict[str, Any]:
    """The same API connected with OAuth 2.0, its operations naming the scopes they need."""
    spec = document(url)
    spec["security"] = [{"petstoreAuth": ["pets:read"]}]
    spec["paths"]["/pets"]["post"]["security"] = [{"petstoreAuth": ["pets:write"]}]
    spec["paths"]["/pets/{petId}"]["delete"]["security"] = [{"petstoreAuth": ["pets:write"]}]
    spec["components"]["securitySchemes"] = {"petstoreAuth": {"type": "oauth2", "flows": {"authorizationCode": {
        "authorizationUrl": f"{url}/oauth/authorize", "tokenUrl": f"{url}/oauth/token",
        "scopes": {"pets:read": "Read your pets", "pets:write": "Add and remove pets"}}}}}
    return spec
