"""SMTP and IMAP for the Email connector, behind the same guardrails as `integrations.http.Outbound`.

Mail isn't HTTP, so Outbound can't carry it; this module applies its rules by hand. Each server's
host is resolved and vetted by `netguard.check_url` (an on-premise mail server needs
AGENTRY_INTEGRATIONS_ALLOWED_HOSTS) and the socket connects to a vetted IP, so a second DNS
answer can't send us elsewhere, while TLS still sends SNI for, and verifies the certificate of,
the real name. Every socket has a timeout, what an IMAP server sends is capped, and every failure
becomes a ToolError with a message a person can act on; a rejected login is `Unauthorized`.
"""

from __future__ import annotations

import base64
import imaplib
import ipaddress
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from typing import Any

from django.conf import settings
from django.core.mail.utils import DNS_NAME

from integrations.builtin import netguard
from integrations.http import HINT, Unauthorized
from integrations.tools import ToolError

SMTP_SECURITY = ("starttls", "ssl", "none")
IMAP_SECURITY = ("ssl", "starttls", "none")
SMTP_PORTS = {"starttls": 587, "ssl": 465, "none": 587}
IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}
# Protocol chatter an IMAP session may add on top of the fetched message bytes (greeting,
# capabilities, SEARCH results, FETCH metadata).
IMAP_OVERHEAD_BYTES = 1_000_000
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HOST_NAME = re.compile(r"^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SettingsError(ToolError):
    """A connection setting that can't work, named so a form can show it next to the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Server:
    kind: str  # "SMTP" or "IMAP", for messages
    host: str
    port: int
    security: str

    @property
    def label(self) -> str:
        return f"{self.kind} server {self.host}:{self.port}"


@dataclass(frozen=True)
class Mailbox:
    """One connection's mail settings and credentials."""

    smtp: Server
    imap: Server | None
    username: str
    password: str
    from_address: str


# ---------------------------------------------------------------------------- settings

def _host(field: str, value: Any) -> str:
    host = str(value or "").strip().strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        ascii_host = ""
    if not _HOST_NAME.match(ascii_host):
        raise SettingsError(field, f"{host!r} is not a host name or IP address.")
    return ascii_host.rstrip(".").lower()


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    chosen = str(value or choices[0]).strip().lower()
    if chosen not in choices:
        raise SettingsError(field, f"Choose one of {', '.join(choices)}.")
    return chosen


def _port(field: str, value: Any, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise SettingsError(field, "Enter a port number.") from None
    if not 1 <= port <= 65535:
        raise SettingsError(field, "A port is a number from 1 to 65535.")
    return port


def mailbox_of(options: dict[str, Any], credentials: dict[str, Any]) -> Mailbox:
    """Read a connection's settings (non-secret options) and password (credentials)."""
    if not options.get("smtp_host"):
        raise SettingsError("smtp_host", "This field is required.")
    smtp_security = _choice("smtp_security", options.get("smtp_security"), SMTP_SECURITY)
    smtp = Server("SMTP", _host("smtp_host", options["smtp_host"]),
                  _port("smtp_port", options.get("smtp_port"), SMTP_PORTS[smtp_security]), smtp_security)
    imap = None
    if options.get("imap_host"):
        imap_security = _choice("imap_security", options.get("imap_security"), IMAP_SECURITY)
        imap = Server("IMAP", _host("imap_host", options["imap_host"]),
                      _port("imap_port", options.get("imap_port"), IMAP_PORTS[imap_security]), imap_security)
    username = str(options.get("username") or "").strip()
    password = str(credentials.get("password") or "")
    if not username:
        raise SettingsError("username", "This field is required.")
    if _CONTROL.search(username):
        raise SettingsError("username", "The username can't contain control characters.")
    if not password:
        raise SettingsError("password", "This field is required.")
    if "\r" in password or "\n" in password or "\x00" in password:
        raise SettingsError("password", "The password can't contain line breaks.")
    from_address = str(options.get("from_address") or "").strip() or (username if "@" in username else "")
    return Mailbox(smtp=smtp, imap=imap, username=username, password=password, from_address=from_address)


# ---------------------------------------------------------------------------- address guard

def vet(server: Server) -> list[netguard.IPAddress]:
    """The server's addresses, every one checked by the same guard as HTTP traffic; nothing is
    connected yet."""
    literal = server.host.count(":") > 1
    url = f"http://{'[' + server.host + ']' if literal else server.host}:{server.port}/"
    try:
        return netguard.check_url(url, allowed_hosts=settings.INTEGRATIONS_ALLOWED_HOSTS, hint=HINT)
    except ToolError as exc:
        raise ToolError(f"not connecting to the {server.label}: {exc}") from None


def _timeout(deadline: float | None) -> float:
    limit = float(settings.INTEGRATIONS_TIMEOUT)
    if deadline is None:
        return limit
    left = deadline - time.monotonic()
    if left <= 0:
        raise ToolError("no time left for this call")
    return max(1.0, min(limit, left))


def _connect(addresses: list[netguard.IPAddress], port: int, timeout: float) -> socket.socket:
    # Like socket.create_connection, but only ever to addresses the guard has seen.
    failure: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((str(address), port), timeout=timeout)
        except OSError as exc:
            failure = exc
    assert failure is not None
    raise failure


def tls_context() -> ssl.SSLContext:
    # Verifies the chain and the host name (the stdlib's SMTP_SSL/IMAP4_SSL defaults don't);
    # OpenSSL's SSL_CERT_FILE / SSL_CERT_DIR let an operator trust a private CA.
    return ssl.create_default_context()


@contextmanager
def _network_errors(server: Server, timeout: float) -> Iterator[None]:
    try:
        yield
    except (ToolError, smtplib.SMTPException):
        raise  # SMTP errors are OSErrors too; _smtp_errors words them
    except ssl.SSLCertVerificationError as exc:
        raise ToolError(f"the certificate of the {server.label} could not be verified "
                        f"({exc.verify_message or exc.reason}); nothing was sent") from None
    except ssl.SSLError as exc:
        raise ToolError(f"the TLS handshake with the {server.label} failed ({exc.reason or exc}); "
                        "check its security setting") from None
    except TimeoutError:
        raise ToolError(f"the {server.label} did not answer within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise ToolError(f"the {server.label} refused the connection; check the host and port") from None
    except OSError as exc:
        raise ToolError(f"could not reach the {server.label}: {exc.strerror or type(exc).__name__}") from None


# ---------------------------------------------------------------------------- SMTP

class _PinnedSMTP(smtplib.SMTP):
    def __init__(self, *, hostname: str, addresses: list[netguard.IPAddress], timeout: float) -> None:
        self._addresses = addresses
        super().__init__(local_hostname=str(DNS_NAME), timeout=timeout)
        self._host = hostname  # starttls() checks the certificate against it

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _connect(self._addresses, port, timeout)


class _PinnedSMTPSSL(smtplib.SMTP_SSL):
    def __init__(self, *, hostname: str, addresses: list[netguard.IPAddress], timeout: float) -> None:
        self._addresses = addresses
        super().__init__(local_hostname=str(DNS_NAME), timeout=timeout, context=tls_context())
        self._host = hostname

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self.context.wrap_socket(_connect(self._addresses, port, timeout), server_hostname=self._host)


def _smtp_text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:300]


@contextmanager
def _smtp_errors(server: Server, timeout: float) -> Iterator[None]:
    try:
        with _network_errors(server, timeout):
            yield
    except smtplib.SMTPAuthenticationError as exc:
        reason = f"{exc.smtp_code} {_smtp_text(exc.smtp_error)}"
        if 400 <= exc.smtp_code < 500:
            raise ToolError(f"the {server.label} could not check the login right now ({reason}); "
                            "try again later") from None
        raise Unauthorized(f"the {server.label} refused the username or password ({reason})", status=None) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise ToolError(f"the {server.label}: {exc}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(f"{addr} ({code} {_smtp_text(text)})" for addr, (code, text) in exc.recipients.items())
        raise ToolError(f"the {server.label} refused every recipient: {refused}; nothing was sent") from None
    except smtplib.SMTPSenderRefused as exc:
        raise ToolError(f"the {server.label} refused the sender {exc.sender} ({exc.smtp_code} "
                        f"{_smtp_text(exc.smtp_error)}); nothing was sent") from None
    except smtplib.SMTPDataError as exc:
        raise ToolError(f"the {server.label} rejected the message ({exc.smtp_code} {_smtp_text(exc.smtp_error)})") \
            from None
    except smtplib.SMTPServerDisconnected as exc:
        if "timed out" in str(exc):  # smtplib turns a read timeout into a disconnect
            raise ToolError(f"the {server.label} did not answer within {timeout:g} s") from None
        raise ToolError(f"the {server.label} closed the connection unexpectedly") from None
    except smtplib.SMTPResponseException as exc:
        raise ToolError(f"the {server.label} answered {exc.smtp_code} {_smtp_text(exc.smtp_error)}") from None
    except smtplib.SMTPException as exc:
        raise ToolError(f"the {server.label} failed: {exc}") from None


@contextmanager
def smtp_session(box: Mailbox, *, deadline: float | None) -> Iterator[smtplib.SMTP]:
    """A logged-in SMTP connection. The password is only sent over TLS unless the connection's
    security setting is "none"; a server that doesn't offer STARTTLS isn't silently downgraded."""
    server = box.smtp
    addresses = vet(server)
    timeout = _timeout(deadline)
    with _smtp_errors(server, timeout):
        cls = _PinnedSMTPSSL if server.security == "ssl" else _PinnedSMTP
        client = cls(hostname=server.host, addresses=addresses, timeout=timeout)
        try:
            client.connect(server.host, server.port)
            client.ehlo()
            if server.security == "starttls":
                if not client.has_extn("starttls"):
                    raise ToolError(f"the {server.label} doesn't offer STARTTLS, so the password would travel "
                                    "unencrypted; nothing was sent (use security \"ssl\" if it speaks TLS from the "
                                    "start, or \"none\" only on a trusted network)")
                client.starttls(context=tls_context())
                client.ehlo()
            if not client.has_extn("auth"):
                raise ToolError(f"the {server.label} doesn't offer authentication (no AUTH extension); "
                                "check the host, port and security setting")
            try:
                client.login(box.username, box.password)
            except UnicodeEncodeError:
                raise ToolError("SMTP login needs an ASCII username and password") from None
            yield client
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()


def smtp_send(box: Mailbox, message: EmailMessage, *, sender: str, recipients: list[str],
              deadline: float | None) -> dict[str, str]:
    """Send and return the recipients the server refused ({} when all were accepted)."""
    with smtp_session(box, deadline=deadline) as client:
        refused = client.send_message(message, from_addr=sender, to_addrs=recipients)
    return {addr: f"{code} {_smtp_text(text)}" for addr, (code, text) in refused.items()}


def smtp_check(box: Mailbox, *, deadline: float | None) -> None:
    with smtp_session(box, deadline=deadline):
        pass


# ---------------------------------------------------------------------------- IMAP

class TooLarge(ToolError):
    pass


class _Capped:
    """Counts what the server sends; refuses a literal or a session past the caps (imaplib would
    otherwise read whatever size a server announces into memory)."""

    _limit: int
    _literal_limit: int
    _received: int
    _deadline: float | None
    file: Any
    host: str

    def _count(self, size: int) -> None:
        self._received += size
        if self._received > self._limit:
            raise TooLarge(f"the IMAP server {self.host} sent more than the {self._limit}-byte limit for one call")
        # The socket timeout bounds each read; this bounds a server that drips bytes forever.
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise ToolError(f"the IMAP server {self.host} was still sending when the call ran out of time")

    def read(self, size: int) -> bytes:
        if size > self._literal_limit:
            raise TooLarge(f"the IMAP server {self.host} announced a {size}-byte reply, more than the "
                           f"{self._literal_limit}-byte limit")
        self._count(size)
        return self.file.read(size)

    def readline(self) -> bytes:
        line = imaplib.IMAP4.readline(self)  # type: ignore[arg-type]
        self._count(len(line))
        return line


class _PinnedIMAP(_Capped, imaplib.IMAP4):
    def __init__(self, *, server: Server, addresses: list[netguard.IPAddress], timeout: float, max_bytes: int,
                 deadline: float | None) -> None:
        self._addresses, self._literal_limit, self._received = addresses, max_bytes, 0
        self._limit, self._deadline = max_bytes + IMAP_OVERHEAD_BYTES, deadline
        super().__init__(server.host, server.port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return _connect(self._addresses, self.port, timeout or float(settings.INTEGRATIONS_TIMEOUT))


class _PinnedIMAPSSL(_Capped, imaplib.IMAP4_SSL):
    def __init__(self, *, server: Server, addresses: list[netguard.IPAddress], timeout: float, max_bytes: int,
                 deadline: float | None) -> None:
        self._addresses, self._literal_limit, self._received = addresses, max_bytes, 0
        self._limit, self._deadline = max_bytes + IMAP_OVERHEAD_BYTES, deadline
        super().__init__(server.host, server.port, ssl_context=tls_context(), timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = _connect(self._addresses, self.port, timeout or float(settings.INTEGRATIONS_TIMEOUT))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def quote(text: str) -> str:
    """An IMAP quoted string (RFC 3501): ASCII without CR/LF, backslash and quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox_name(folder: str) -> str:
    """A folder name as IMAP wants it: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    if not folder or len(folder) > 200 or _CONTROL.search(folder):
        raise ToolError("a folder name is 1 to 200 characters without control characters")
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii").rstrip("=")
            out.append("&" + raw.replace("/", ",") + "-")
            pending.clear()

    for char in folder:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return quote("".join(out))


@dataclass(frozen=True)
class Search:
    """Structured search criteria. Each becomes one IMAP search key with its value quoted (or
    sent as a literal), so nothing the model writes is ever read as IMAP syntax."""

    sender: str = ""
    subject: str = ""
    since: date | None = None
    unseen: bool = False

    def arguments(self) -> tuple[list[str], bytes | None]:
        """Arguments for UID SEARCH, and the literal imaplib sends after them (at most one:
        imaplib supports one per command, so the one non-ASCII value goes last)."""
        keys: list[str] = []
        if self.since is not None:
            keys += ["SINCE", f"{self.since.day}-{_MONTHS[self.since.month - 1]}-{self.since.year}"]
        if self.unseen:
            keys.append("UNSEEN")
        texts = [("FROM", "sender", self.sender), ("SUBJECT", "subject", self.subject)]
        for _key, name, value in texts:
            if _CONTROL.search(value):
                raise ToolError(f"{name} can't contain control characters or line breaks")
        wide = [(key, value) for key, _name, value in texts if value and not value.isascii()]
        if len(wide) > 1:
            raise ToolError("only one of sender and subject may contain non-ASCII characters in one search")
        for key, _name, value in texts:
            if value and value.isascii():
                keys += [key, quote(value)]
        if not wide:
            return keys or ["ALL"], None
        key, value = wide[0]
        return ["CHARSET", "UTF-8", *keys, key], value.encode("utf-8")


@dataclass
class Fetched:
    uid: int
    size: int | None
    flags: tuple[str, ...]
    body: bytes


_FETCH_START = re.compile(rb"^\d+ \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")


def parse_fetch(data: list[Any]) -> list[Fetched]:
    """imaplib's FETCH data: (prefix, literal) tuples with the rest of each response as bytes."""
    pieces: list[list[Any]] = []  # [metadata bytes, literal or None]
    for part in data:
        if isinstance(part, tuple):
            pieces.append([part[0], part[1]])
        elif isinstance(part, bytes) and (_FETCH_START.match(part) or not pieces):
            pieces.append([part, None])
        elif isinstance(part, bytes):
            pieces[-1][0] += b" " + part
    found: list[Fetched] = []
    for meta, body in pieces:
        uid = _UID.search(meta)
        if uid is None or body is None:
            continue  # an unsolicited flag update, not an answer to our FETCH
        size = _SIZE.search(meta)
        flags = _FLAGS.search(meta)
        found.append(Fetched(uid=int(uid.group(1)), size=int(size.group(1)) if size else None,
                             flags=tuple(flags.group(1).decode("ascii", "replace").split()) if flags else (),
                             body=body))
    return found


def _imap_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = value[-1] if value else ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):
        text = text[2:-1]  # imaplib raises some errors with the bytes' repr
    return " ".join(text.split())[:300]


class ImapSession:
    """One logged-in IMAP connection; use as a context manager."""

    def __init__(self, box: Mailbox, *, deadline: float | None, max_bytes: int) -> None:
        if box.imap is None:
            raise ToolError("this email connection has no IMAP server configured, so it can't read mail; "
                            "its owner can reconnect it with an IMAP host")
        self.box = box
        self.server = box.imap
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.client: imaplib.IMAP4 | None = None

    @contextmanager
    def errors(self) -> Iterator[None]:
        timeout = float(settings.INTEGRATIONS_TIMEOUT)
        try:
            with _network_errors(self.server, timeout):
                yield
        except imaplib.IMAP4.abort as exc:
            raise ToolError(f"the {self.server.label} dropped the connection ({_imap_text(exc.args)})") from None
        except imaplib.IMAP4.error as exc:
            raise ToolError(f"the {self.server.label} answered: {_imap_text(exc.args)}") from None

    def __enter__(self) -> ImapSession:
        server = self.server
        addresses = vet(server)
        timeout = _timeout(self.deadline)
        with self.errors():
            cls = _PinnedIMAPSSL if server.security == "ssl" else _PinnedIMAP
            self.client = cls(server=server, addresses=addresses, timeout=timeout, max_bytes=self.max_bytes,
                              deadline=self.deadline)
            try:
                if server.security == "starttls":
                    if "STARTTLS" not in self.client.capabilities:
                        raise ToolError(f"the {server.label} doesn't offer STARTTLS, so the password would travel "
                                        "unencrypted; nothing was sent (use security \"ssl\", or \"none\" only on "
                                        "a trusted network)")
                    self.client.starttls(ssl_context=tls_context())
                self._login()
            except BaseException:
                self._drop()
                raise
        return self

    def _login(self) -> None:
        assert self.client is not None
        try:
            self.client.login(quote(self.box.username), self.box.password)
        except UnicodeEncodeError:
            raise ToolError("IMAP login needs an ASCII username and password") from None
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            reason = _imap_text(exc.args)
            if "[UNAVAILABLE]" in reason.upper():
                raise ToolError(f"the {self.server.label} can't check the login right now ({reason}); "
                                "try again later") from None
            raise Unauthorized(f"the {self.server.label} refused the username or password ({reason})",
                               status=None) from None

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if self.client is None:
            return
        if exc_type is not None:
            # After a failure the stream may be mid-reply (a refused oversized literal); a polite
            # LOGOUT would read that leftover as its answer.
            self._drop()
            return
        try:
            self.client.logout()
        except (imaplib.IMAP4.error, OSError, ToolError):
            self._drop()

    def _drop(self) -> None:
        if self.client is not None:
            try:
                self.client.shutdown()
            except OSError:
                pass

    def examine(self, folder: str) -> int:
        """Open a folder read-only (fetching never marks mail as read); return its message count."""
        assert self.client is not None
        with self.errors():
            typ, data = self.client.select(mailbox_name(folder), readonly=True)
        if typ != "OK":
            raise ToolError(f"the {self.server.label} can't open the folder {folder!r}: {_imap_text(data)}")
        try:
            return int(data[0] or 0)
        except (TypeError, ValueError, IndexError):
            return 0

    def search(self, criteria: Search) -> list[int]:
        assert self.client is not None
        arguments, literal = criteria.arguments()
        with self.errors():
            self.client.literal = literal
            typ, data = self.client.uid("SEARCH", *arguments)
        if typ != "OK":
            raise ToolError(f"the {self.server.label} refused the search: {_imap_text(data)}")
        uids: set[int] = set()
        for line in data:
            for token in (line or b"").split():
                if token.isdigit():
                    uids.add(int(token))
        return sorted(uids, reverse=True)

    def fetch(self, uids: list[int], *, partial: int) -> dict[int, Fetched]:
        """Size, flags and the first `partial` bytes of each message (without marking it read)."""
        assert self.client is not None
        if not uids:
            return {}
        with self.errors():
            typ, data = self.client.uid("FETCH", ",".join(map(str, uids)),
                                        f"(UID RFC822.SIZE FLAGS BODY.PEEK[]<0.{partial}>)")
        if typ != "OK":
            raise ToolError(f"the {self.server.label} refused to fetch messages: {_imap_text(data)}")
        return {item.uid: item for item in parse_fetch(data) if item.uid in uids}


def imap_check(box: Mailbox, *, deadline: float | None) -> None:
    with ImapSession(box, deadline=deadline, max_bytes=int(settings.INTEGRATIONS_MAX_RESPONSE_BYTES)) as session:
        session.examine("INBOX")
