"""`web_fetch`: read a public web page or JSON/XML document as text.

Every hop goes through the address guard (integrations.builtin.netguard) and connects to the IP
the guard vetted; the body is streamed and cut at WEB_FETCH_MAX_BYTES so a huge or endless
response can't fill memory.
"""

from __future__ import annotations

import codecs
import re
import time
from html.parser import HTMLParser

import httpx
from django.conf import settings

from integrations.builtin import netguard
from integrations.tools import SideEffect, ToolError, tool

TIMEOUT_SECONDS = 10.0
# Wall-clock cap for the whole fetch: the per-read timeout alone lets a server drip one byte
# every 9 s forever. Kept below the tool's own timeout so the worker thread really finishes.
TOTAL_SECONDS = 25.0
MAX_REDIRECTS = 5
DEFAULT_MAX_CHARS = 20_000
USER_AGENT = "Agentry-web_fetch/0.1 (+https://github.com/agentry)"

_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/xhtml+xml"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)


def readable_type(mime: str) -> bool:
    return (
        mime.startswith("text/")
        or mime in _TEXT_TYPES
        or (mime.startswith("application/") and mime.endswith(("+json", "+xml")))
    )


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page, one line per block element."""

    SKIP = frozenset({"script", "style", "nav", "noscript", "template", "svg", "iframe", "canvas"})
    BLOCK = frozenset(
        {
            "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt", "fieldset",
            "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
            "main", "ol", "p", "pre", "section", "summary", "table", "tr", "ul",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self._in_title = False
        self._title_parts: list[str] = []
        self._skip_depth = 0
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag == "title" and self.title is None and not self._skip_depth:
            self._in_title = True
        elif tag in self.BLOCK:
            self._parts.append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            self._parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title" and self._in_title:
            self._in_title = False
            self.title = " ".join("".join(self._title_parts).split())
        elif tag in self.BLOCK:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._in_title:
            self._title_parts.append(data)
        else:
            self._parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self._parts).split("\n"))
        return "\n".join(line for line in lines if line and line != "-")


def html_to_text(html: str) -> tuple[str | None, str]:
    """(title, visible text) of an HTML document."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.title, parser.text()


def _encoding(response: httpx.Response, body: bytes, mime: str) -> str:
    candidates = [response.charset_encoding]
    if mime in _HTML_TYPES:
        match = _META_CHARSET.search(body[:4096])
        if match:
            candidates.append(match.group(1).decode("ascii"))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return codecs.lookup(candidate).name
        except LookupError:
            continue
    return "utf-8"


def _send(client: httpx.Client, url: httpx.URL, addresses: list[netguard.IPAddress], deadline: float) -> httpx.Response:
    """Open a streamed response, trying each vetted address in turn (a host may list an IPv6
    address first that this machine can't reach)."""
    last_error: httpx.HTTPError | None = None
    for address in addresses:
        if time.monotonic() > deadline:
            break
        request = netguard.pinned_request(client, "GET", url, address)
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last_error = exc
        except httpx.TimeoutException:
            raise ToolError(f"timed out connecting to {url} after {TIMEOUT_SECONDS:g} s") from None
    raise ToolError(f"could not connect to {url}: {last_error or 'no time left'}")


def _read(response: httpx.Response, max_bytes: int, deadline: float) -> tuple[bytes, str | None]:
    """The body, at most max_bytes of it, and why it was cut short (or None)."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            if size + len(chunk) > max_bytes:
                chunks.append(chunk[: max_bytes - size])
                note = f"the response is larger than {max_bytes} bytes; only the first {max_bytes} were read"
                return b"".join(chunks), note
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:
                return b"".join(chunks), f"reading stopped after {TOTAL_SECONDS:g} s; the text is incomplete"
    except httpx.TimeoutException:
        if not chunks:
            raise ToolError(f"timed out reading the response after {TIMEOUT_SECONDS:g} s") from None
        return b"".join(chunks), f"the server stopped sending for {TIMEOUT_SECONDS:g} s; the text is incomplete"
    return b"".join(chunks), None


def fetch(url: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    max_bytes = int(settings.WEB_FETCH_MAX_BYTES)
    deadline = time.monotonic() + TOTAL_SECONDS
    original = current = netguard.parse_url(url)
    # trust_env=False: an HTTP(S)_PROXY from the environment would resolve the name itself
    # and undo the pinning.
    with httpx.Client(
        timeout=httpx.Timeout(TIMEOUT_SECONDS),
        follow_redirects=False,
        trust_env=False,
        headers={
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml,application/json;q=0.9,text/*;q=0.8,application/xml;q=0.8",
        },
    ) as client:
        for hop in range(MAX_REDIRECTS + 1):
            addresses = netguard.check_url(current)
            try:
                response = _send(client, current, addresses, deadline)
            except httpx.HTTPError as exc:
                raise ToolError(f"request to {current} failed: {exc}") from None
            try:
                location = response.headers.get("location")
                if response.is_redirect and location:
                    if hop == MAX_REDIRECTS:
                        raise ToolError(f"too many redirects (more than {MAX_REDIRECTS}) starting at {original}")
                    try:
                        # Resolve against the real URL, not the IP-pinned one the request went to.
                        current = netguard.parse_url(current.join(location))
                    except httpx.InvalidURL as exc:
                        raise ToolError(f"invalid redirect location {location!r}: {exc}") from None
                    continue
                return _render(response, original, current, max_bytes, max_chars, deadline)
            finally:
                response.close()
    raise AssertionError("unreachable")  # the loop either returns or raises


def _render(
    response: httpx.Response,
    original: httpx.URL,
    url: httpx.URL,
    max_bytes: int,
    max_chars: int,
    deadline: float,
) -> str:
    status = response.status_code
    if not 200 <= status < 300:
        raise ToolError(f"{url} returned HTTP {status} {response.reason_phrase}".rstrip())
    mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not readable_type(mime):
        kind = mime or "of unknown type (no Content-Type)"
        raise ToolError(
            f"refused: {url} is {kind}; web_fetch only reads text, HTML, JSON and XML, not images, PDFs or binary files"
        )
    try:
        body, cut_short = _read(response, max_bytes, deadline)
    except httpx.HTTPError as exc:
        raise ToolError(f"reading {url} failed: {exc}") from None
    text = body.decode(_encoding(response, body, mime), errors="replace")

    header = f"URL: {url} (status {status}, {mime})"
    if url != original:
        header += f"\nRedirected from: {original}"
    lines = [header]
    if mime in _HTML_TYPES:
        title, text = html_to_text(text)
        if title:
            lines.append(f"Title: {title}")
    if cut_short:
        lines.append(f"Note: truncated; {cut_short}.")
    text = text.strip()
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n[cut at {max_chars} of {len(text)} characters; raise max_chars to see more]"
    return "\n".join(lines) + "\n\n" + text


@tool(
    name="web_fetch",
    description=(
        "Fetch a public web page or document with HTTP GET and return its readable text. HTML is reduced to "
        "its title and visible text (scripts, styles and navigation removed); plain text, JSON and XML come "
        "back as they are. Images, PDFs and other binary files are refused. Only http:// and https:// URLs on "
        "the public internet work: addresses on private networks are refused. Redirects are followed (up to 5). "
        "Very large responses are truncated, and the output is cut to max_chars characters (default 20000). "
        "The first line gives the final URL, HTTP status and content type."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "url": {
                "type": "string",
                "format": "uri",
                "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
                "minLength": 8,
                "maxLength": 2048,
                "description": 'Absolute http or https URL to fetch, e.g. "https://example.com/page".',
            },
            "max_chars": {
                "type": "integer",
                "minimum": 100,
                "maximum": 100_000,
                "default": DEFAULT_MAX_CHARS,
                "description": "Maximum number of characters of text to return (100-100000, default 20000).",
            },
        },
        "required": ["url"],
        "additionalProperties": False,
    },
    side_effect=SideEffect.READ,
    timeout_seconds=30,
)
def web_fetch(url: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    return fetch(url, max_chars)
