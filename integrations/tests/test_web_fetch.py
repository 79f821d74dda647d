"""web_fetch and its address guard.

Traffic only ever goes to the loopback server started here: every non-loopback address in these
tests is an IP literal the guard refuses before any connection is made, and the only host name
used is `localhost`, which resolves from /etc/hosts.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from integrations import tools
from integrations.builtin import netguard
from integrations.builtin.web_fetch import fetch, html_to_text
from integrations.tools import ToolError

PAGE = b"""<!doctype html>
<html><head>
<title>The   Test Page</title>
<style>body { color: red } .STYLE_TEXT {}</style>
<script>var secret = "SCRIPT_TEXT";</script>
</head><body>
<nav><a href="/">Home</a> NAV_TEXT</nav>
<h1>Hello, reader</h1>
<p>First    paragraph with <b>bold</b> text &amp; an entity.</p>
<ul><li>one</li><li>two</li></ul>
<script type="module">console.log("SCRIPT_TEXT")</script>
</body></html>"""

LATIN1_PAGE = (
    '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head><body>cr\xe8me br\xfbl\xe9e</body></html>'
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up early (size cap, failed TLS verification) are expected here


@dataclass
class Site:
    port: int
    hosts_seen: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _routes(port: int) -> dict[str, tuple[int, dict[str, str], bytes]]:
    html = {"Content-Type": "text/html; charset=utf-8"}
    return {
        "/page.html": (200, html, PAGE),
        "/latin1.html": (200, {"Content-Type": "text/html"}, LATIN1_PAGE.encode("latin-1")),
        "/data.json": (200, {"Content-Type": "application/json"}, b'{"answer": 42, "items": ["a", "b"]}'),
        "/feed.xml": (200, {"Content-Type": "application/atom+xml"}, b"<feed><title>News</title></feed>"),
        "/big.txt": (200, {"Content-Type": "text/plain"}, b"0123456789" * 50_000),
        "/long.txt": (200, {"Content-Type": "text/plain"}, b"word " * 2_000),
        "/image.png": (200, {"Content-Type": "image/png"}, PNG),
        "/report.pdf": (200, {"Content-Type": "application/pdf"}, b"%PDF-1.4"),
        "/untyped": (200, {}, b"mystery bytes"),
        "/missing": (404, html, b"<h1>Not here</h1>"),
        "/broken": (500, html, b"<h1>Oops</h1>"),
        "/redirect-to-page": (302, {"Location": "/page.html"}, b""),
        "/redirect-to-private": (302, {"Location": "http://10.1.2.3/secret"}, b""),
        "/redirect-to-metadata": (301, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/redirect-to-localhost": (302, {"Location": f"http://localhost:{port}/data.json"}, b""),
        "/redirect-to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/redirect-loop": (302, {"Location": "/redirect-loop"}, b""),
    }


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    hosts_seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            hosts_seen.append(self.headers.get("Host", ""))
            status, headers, body = routes.get(self.path, (404, {"Content-Type": "text/plain"}, b"no route"))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for start in range(0, len(body), 16_384):
                    self.wfile.write(body[start : start + 16_384])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading at its size cap

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = QuietServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    routes = _routes(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(port=port, hosts_seen=hosts_seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def allow_loopback(settings):
    settings.WEB_FETCH_ALLOWED_HOSTS = ["127.0.0.1"]
    return settings


@pytest.fixture
def default_guard(settings):
    settings.WEB_FETCH_ALLOWED_HOSTS = []
    return settings


# --- the guard, on its own ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/", "127.0.0.1 is a loopback address"),
        ("http://localhost/", "localhost resolves to "),  # 127.0.0.1 or ::1, whichever /etc/hosts lists first
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://192.168.1.1/", "a private address"),
        ("http://172.16.0.5/", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata address"),
        ("http://[fd00:ec2::254]/", "the cloud metadata address"),
        ("http://169.254.10.10/", "a link-local address"),
        ("http://0.0.0.0/", "an unspecified address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://240.0.0.1/", "a reserved address"),
        ("http://100.64.0.1/", "a non-public address"),
        ("http://[::ffff:127.0.0.1]/", "a loopback address (embedded IPv4 127.0.0.1)"),
        ("http://[::ffff:169.254.169.254]/", "the cloud metadata address"),
        ("http://[64:ff9b::a00:1]/", "a private address (embedded IPv4 10.0.0.1)"),
        ("http://[2002:7f00:1::]/", "a loopback address"),
        ("http://2130706433/", "resolves to 127.0.0.1, a loopback address"),
        ("http://0x7f.1/", "resolves to 127.0.0.1, a loopback address"),
    ],
)
def test_the_guard_refuses_non_public_addresses(default_guard, url, reason):
    with pytest.raises(netguard.BlockedAddress) as refused:
        netguard.check_url(url)

    assert reason in str(refused.value)
    assert str(refused.value).startswith("refused: ")
    assert "AGENTRY_WEB_FETCH_ALLOWED_HOSTS" in str(refused.value)


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8", "2002:808:808::1"],
)
def test_the_guard_considers_public_addresses_fine(address):
    # Classification only; nothing is resolved or contacted.
    assert netguard.refusal_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1/", "/relative/path"])
def test_the_guard_accepts_only_http_and_https(url):
    with pytest.raises(ToolError, match="only http and https"):
        netguard.check_url(url)


def test_the_guard_returns_the_vetted_addresses(settings):
    settings.WEB_FETCH_ALLOWED_HOSTS = ["127.0.0.0/8"]

    assert netguard.check_url("http://127.0.0.1:9/") == [ipaddress.ip_address("127.0.0.1")]
    assert ipaddress.ip_address("127.0.0.1") in netguard.check_url("http://localhost/", allowed_hosts=["localhost"])


def test_the_guard_allows_hosts_the_operator_names():
    assert netguard.check_url("http://localhost/", allowed_hosts=["LOCALHOST"])
    assert netguard.check_url("http://10.0.0.1/", allowed_hosts=["10.0.0.0/8"])
    assert netguard.check_url("http://[::1]/", allowed_hosts=["::1"])
    with pytest.raises(netguard.BlockedAddress):
        netguard.check_url("http://10.0.0.1/", allowed_hosts=["10.0.0.2", "127.0.0.1/32", "internal.example"])


def test_a_broad_allowed_range_does_not_unlock_the_metadata_address():
    with pytest.raises(netguard.BlockedAddress, match="metadata"):
        netguard.check_url("http://169.254.169.254/", allowed_hosts=["169.254.0.0/16", "0.0.0.0/0"])

    assert netguard.check_url("http://169.254.169.254/", allowed_hosts=["169.254.169.254"])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_a_pinned_https_request_sends_sni_and_verifies_the_certificate_for_the_real_name(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    names_seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = self.headers.get("Host", "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server_context.sni_callback = lambda sock, name, context: names_seen.append(name)
    server = QuietServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    loopback = ipaddress.ip_address("127.0.0.1")
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), trust_env=False) as client:
            request = netguard.pinned_request(client, "GET", httpx.URL(f"https://localhost:{port}/"), loopback)
            assert request.url.host == "127.0.0.1"
            response = client.send(request)
            assert response.text == f"localhost:{port}"
            assert names_seen == ["localhost"]

            # The certificate is checked against the real name, not the IP connected to.
            wrong = netguard.pinned_request(client, "GET", httpx.URL(f"https://wrong.example:{port}/"), loopback)
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                client.send(wrong)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- web_fetch against the loopback site --------------------------------------------------------


def test_it_refuses_loopback_by_default(default_guard, site):
    before = len(site.hosts_seen)

    result = tools.invoke("web_fetch", {"url": site.url("/page.html")})

    assert result.is_error
    assert "refused: 127.0.0.1 is a loopback address" in result.output
    assert "AGENTRY_WEB_FETCH_ALLOWED_HOSTS" in result.output
    assert len(site.hosts_seen) == before  # refused before connecting


def test_it_refuses_localhost_by_default(default_guard, site):
    before = len(site.hosts_seen)

    result = tools.invoke("web_fetch", {"url": site.url("/page.html", host="localhost")})

    assert result.is_error
    assert "refused: localhost resolves to " in result.output
    assert "a loopback address" in result.output
    assert len(site.hosts_seen) == before


@pytest.mark.parametrize("url", ["http://10.20.30.40/", "http://169.254.169.254/latest/meta-data/iam/"])
def test_it_refuses_private_and_metadata_addresses_even_when_loopback_is_allowed(allow_loopback, url):
    result = tools.invoke("web_fetch", {"url": url})

    assert result.is_error
    assert result.output.startswith("Error: refused: ")


def test_it_returns_the_readable_text_of_an_html_page(allow_loopback, site):
    result = tools.invoke("web_fetch", {"url": site.url("/page.html")})

    assert not result.is_error, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"URL: {site.url('/page.html')} (status 200, text/html)"
    assert lines[1] == "Title: The Test Page"
    assert "Hello, reader" in result.output
    assert "First paragraph with bold text & an entity." in result.output
    assert "- one\n- two" in result.output
    for hidden in ("SCRIPT_TEXT", "STYLE_TEXT", "NAV_TEXT", "<p>", "color: red"):
        assert hidden not in result.output


def test_it_honours_the_pages_declared_charset(allow_loopback, site):
    output = fetch(site.url("/latin1.html"))

    assert "Title: Café" in output
    assert "crème brûlée" in output


def test_it_returns_json_as_is(allow_loopback, site):
    result = tools.invoke("web_fetch", {"url": site.url("/data.json")})

    assert not result.is_error, result.output
    assert result.output.splitlines()[0].endswith("(status 200, application/json)")
    assert result.output.endswith('{"answer": 42, "items": ["a", "b"]}')


def test_it_reads_xml_flavoured_types(allow_loopback, site):
    output = fetch(site.url("/feed.xml"))

    assert "(status 200, application/atom+xml)" in output
    assert "<feed><title>News</title></feed>" in output


def test_it_stops_reading_past_the_size_cap_and_says_so(allow_loopback, site):
    allow_loopback.WEB_FETCH_MAX_BYTES = 4096

    result = tools.invoke("web_fetch", {"url": site.url("/big.txt"), "max_chars": 100_000})

    assert not result.is_error, result.output
    assert "truncated" in result.output
    assert "larger than 4096 bytes" in result.output
    body = result.output.split("\n\n", 1)[1]
    assert len(body) == 4096


def test_it_cuts_the_text_to_max_chars(allow_loopback, site):
    result = tools.invoke("web_fetch", {"url": site.url("/long.txt"), "max_chars": 100})

    assert not result.is_error, result.output
    body = result.output.split("\n\n", 1)[1]
    text, note = body.rsplit("\n", 1)
    assert len(text) == 100
    assert "cut at 100 of" in note


@pytest.mark.parametrize(("path", "kind"), [("/image.png", "image/png"), ("/report.pdf", "application/pdf")])
def test_it_refuses_binary_content(allow_loopback, site, path, kind):
    result = tools.invoke("web_fetch", {"url": site.url(path)})

    assert result.is_error
    assert f"is {kind}" in result.output
    assert "only reads text, HTML, JSON and XML" in result.output


def test_it_refuses_a_response_without_a_content_type(allow_loopback, site):
    result = tools.invoke("web_fetch", {"url": site.url("/untyped")})

    assert result.is_error
    assert "unknown type" in result.output


@pytest.mark.parametrize(("path", "status"), [("/missing", "404 Not Found"), ("/broken", "500 Internal Server Error")])
def test_it_reports_http_errors_with_their_status(allow_loopback, site, path, status):
    result = tools.invoke("web_fetch", {"url": site.url(path)})

    assert result.is_error
    assert f"returned HTTP {status}" in result.output


def test_it_follows_redirects_on_allowed_hosts(allow_loopback, site):
    output = fetch(site.url("/redirect-to-page"))

    assert output.startswith(f"URL: {site.url('/page.html')} (status 200, text/html)")
    assert f"Redirected from: {site.url('/redirect-to-page')}" in output
    assert "Hello, reader" in output


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/redirect-to-private", "refused: 10.1.2.3 is a private address"),
        ("/redirect-to-metadata", "refused: 169.254.169.254 is the cloud metadata address"),
        ("/redirect-to-file", "only http and https"),
        ("/redirect-loop", "too many redirects"),
    ],
)
def test_it_rechecks_every_redirect_hop(allow_loopback, site, path, message):
    result = tools.invoke("web_fetch", {"url": site.url(path)})

    assert result.is_error
    assert message in result.output


def test_a_redirect_to_a_name_resolving_to_allowed_addresses_is_followed(settings, site):
    settings.WEB_FETCH_ALLOWED_HOSTS = ["127.0.0.1", "::1"]

    output = fetch(site.url("/redirect-to-localhost"))

    assert output.startswith(f"URL: {site.url('/data.json', host='localhost')} (status 200, application/json)")


def test_it_connects_to_the_vetted_address_and_still_sends_the_real_host_name(settings, site):
    settings.WEB_FETCH_ALLOWED_HOSTS = ["localhost"]

    output = fetch(site.url("/data.json", host="localhost"))

    assert '"answer": 42' in output
    assert site.hosts_seen[-1] == f"localhost:{site.port}"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/pub/", "javascript:alert(1)"])
def test_it_rejects_non_http_schemes(allow_loopback, url):
    result = tools.invoke("web_fetch", {"url": url})
    assert result.is_error
    assert "invalid arguments for web_fetch" in result.output

    # Past the schema too: the tool itself refuses.
    with pytest.raises(ToolError):
        fetch(url)


def test_it_validates_max_chars(allow_loopback, site):
    result = tools.invoke("web_fetch", {"url": site.url("/data.json"), "max_chars": 5})

    assert result.is_error
    assert "max_chars" in result.output


def test_html_to_text_survives_broken_markup():
    title, text = html_to_text("<div><p>kept</span></nav> also kept<script>never closed")

    assert title is None
    assert text == "kept also kept"
