"""A loopback IMAP4rev1 server (RFC 3501) with mailboxes the test scripts, speaking enough of the
protocol for Python's imaplib: greeting, CAPABILITY, NOOP, LOGIN, SELECT/EXAMINE, SEARCH and
UID SEARCH, FETCH and UID FETCH, CLOSE, LOGOUT. Literals ({n}) are accepted in commands, quoted
strings are unescaped, folder names are modified UTF-7, so what the client sends is parsed the way a
real server parses it.

    server = FakeImapServer(username="ada@example.com", password="s3cret").start()
    uid = server.add(message)                      # an email.message.EmailMessage (or bytes)
    server.add(other, folder="Archive", seen=True, received=datetime(2024, 5, 1, tzinfo=UTC))
    server.commands                                # [("UID SEARCH", ["FROM", "bob"]), ...]

Answers follow RFC 3501 and Dovecot's wording: a wrong password gets `NO [AUTHENTICATIONFAILED]`,
an unknown folder `NO [NONEXISTENT]`, a partial fetch `BODY.PEEK[]<0.100>` comes back as
`BODY[]<0> {n}`. `ignore_partial=True` makes it misbehave and send whole messages regardless, to
test a client's size cap; `ssl_context` makes it speak TLS from the first byte (IMAPS, port 993).
"""

from __future__ import annotations

import base64
import re
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
FLAGS = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
CAPABILITIES = "IMAP4rev1 LITERAL+ AUTH=PLAIN"
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r\n$")
_LITERAL_AT = re.compile(rb"\{(\d+)\+?\}\r\n")
_SECTION = re.compile(r"^(BODY(?:\.PEEK)?)\[([^\]]*)\](?:<(\d+)\.(\d+)>)?$|^(RFC822(?:\.HEADER|\.TEXT)?)$")


@dataclass
class Stored:
    uid: int
    raw: bytes
    flags: set[str]
    received: datetime

    @property
    def parsed(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.raw)  # type: ignore[return-value]


@dataclass
class Folder:
    messages: list[Stored] = field(default_factory=list)
    uidnext: int = 1


# ---------------------------------------------------------------------------- wire parsing

class BadCommand(Exception):
    pass


def parse(data: bytes) -> list[Any]:
    """A command line as tokens: atoms and strings as str, parenthesized lists as lists."""
    stack: list[list[Any]] = [[]]
    i, n = 0, len(data)
    while i < n:
        char = data[i:i + 1]
        if char in (b" ", b"\r", b"\n"):
            i += 1
        elif char == b"(":
            stack.append([])
            i += 1
        elif char == b")":
            if len(stack) == 1:
                raise BadCommand("unbalanced )")
            done = stack.pop()
            stack[-1].append(done)
            i += 1
        elif char == b'"':
            i += 1
            out = bytearray()
            while True:
                if i >= n:
                    raise BadCommand("unterminated quoted string")
                char = data[i:i + 1]
                if char == b"\\":
                    out += data[i + 1:i + 2]
                    i += 2
                elif char == b'"':
                    i += 1
                    break
                elif char in (b"\r", b"\n"):
                    raise BadCommand("line break in a quoted string")
                else:
                    out += char
                    i += 1
            stack[-1].append(out.decode("utf-8"))
        elif char == b"{":
            match = _LITERAL_AT.match(data, i)
            if match is None:
                raise BadCommand("malformed literal")
            start = match.end()
            size = int(match.group(1))
            stack[-1].append(data[start:start + size].decode("utf-8"))
            i = start + size
        else:
            start, depth = i, 0
            while i < n:
                char = data[i:i + 1]
                if char == b"[":
                    depth += 1
                elif char == b"]":
                    depth -= 1
                elif depth == 0 and char in (b" ", b"(", b")", b"\r", b"\n"):
                    break
                i += 1
            stack[-1].append(data[start:i].decode("utf-8"))
    if len(stack) != 1:
        raise BadCommand("unbalanced (")
    return stack[0]


def decode_mailbox(name: str) -> str:
    """Modified UTF-7 (RFC 3501 5.1.3) to text."""

    def wide(match: re.Match[str]) -> str:
        chunk = match.group(1)
        if not chunk:
            return "&"
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        return base64.b64decode(padded).decode("utf-16-be")

    return re.sub(r"&([A-Za-z0-9+,]*)-", wide, name)


def imap_date(text: str) -> date:
    day, month, year = text.split("-")
    return date(int(year), MONTHS.index(month.title()) + 1, int(day))


def in_set(number: int, spec: str, highest: int) -> bool:
    for item in spec.split(","):
        low, _, high = item.partition(":")
        first = highest if low == "*" else int(low)
        last = first if not high else (highest if high == "*" else int(high))
        if min(first, last) <= number <= max(first, last):
            return True
    return False


def _header_text(message: EmailMessage, name: str) -> str:
    return " ".join(str(message.get(name, "")).split()).lower()


# ---------------------------------------------------------------------------- session

class _Session(socketserver.StreamRequestHandler):
    server: FakeImapServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def send(self, text: str | bytes) -> None:
        self.wfile.write((text.encode() if isinstance(text, str) else text) + b"\r\n")

    def read_command(self) -> bytes | None:
        data = b""
        line = self.rfile.readline(1 << 20)
        while line and (match := _LITERAL.search(line)):
            if not match.group(2):
                self.send("+ Ready for literal data")
            data += line + self.rfile.read(int(match.group(1)))
            line = self.rfile.readline(1 << 20)
        if not line:
            return None
        return data + line

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        self.user: str | None = None
        self.folder: str | None = None
        self.readonly = True
        self.send(f"* OK [CAPABILITY {CAPABILITIES}] fake IMAP4rev1 server ready")
        while (data := self.read_command()) is not None:
            try:
                tokens = parse(data)
            except (BadCommand, UnicodeDecodeError) as exc:
                self.send(f"* BAD Error in IMAP command: {exc}")
                continue
            if len(tokens) < 2 or not all(isinstance(t, str) for t in tokens[:2]):
                self.send("* BAD Error in IMAP command received by server")
                continue
            tag, name, args = tokens[0], tokens[1].upper(), tokens[2:]
            if name == "UID" and args and isinstance(args[0], str):
                name, args = f"UID {args[0].upper()}", args[1:]
            self.server.record(name, ["***" if name == "LOGIN" and i == 1 else a for i, a in enumerate(args)])
            if name == "LOGOUT":
                self.send("* BYE Logging out")
                self.send(f"{tag} OK Logout completed.")
                return
            try:
                self.dispatch(tag, name, args)
            except BadCommand as exc:
                self.send(f"{tag} BAD Error in IMAP command {name}: {exc}")

    def dispatch(self, tag: str, name: str, args: list[Any]) -> None:
        if name == "CAPABILITY":
            self.send(f"* CAPABILITY {CAPABILITIES}")
            self.send(f"{tag} OK Capability completed.")
        elif name == "NOOP":
            self.send(f"{tag} OK NOOP completed.")
        elif name == "LOGIN":
            self.login(tag, args)
        elif self.user is None:
            self.send(f"{tag} BAD Error in IMAP command {name}: not authenticated")
        elif name in ("SELECT", "EXAMINE"):
            self.select(tag, name, args)
        elif name == "CLOSE":
            self.folder = None
            self.send(f"{tag} OK Close completed.")
        elif self.folder is None:
            self.send(f"{tag} BAD Error in IMAP command {name}: no mailbox selected")
        elif name in ("SEARCH", "UID SEARCH"):
            self.search(tag, name, args)
        elif name in ("FETCH", "UID FETCH"):
            self.fetch(tag, name, args)
        else:
            self.send(f"{tag} BAD Error in IMAP command {name}: unknown command")

    def login(self, tag: str, args: list[Any]) -> None:
        if self.user is not None:
            raise BadCommand("already authenticated")
        if len(args) != 2 or not all(isinstance(a, str) for a in args):
            raise BadCommand("LOGIN takes a user and a password")
        ok = (args[0], args[1]) == (self.server.username, self.server.password)
        with self.server.lock:
            self.server.login_attempts.append((args[0], ok))
        if not ok:
            self.send(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed.")
            return
        self.user = args[0]
        self.send(f"{tag} OK [CAPABILITY {CAPABILITIES}] Logged in")

    def select(self, tag: str, name: str, args: list[Any]) -> None:
        if len(args) != 1 or not isinstance(args[0], str):
            raise BadCommand(f"{name} takes one mailbox name")
        folder = self.server.find(decode_mailbox(args[0]))
        if folder is None:
            self.folder = None
            self.send(f"{tag} NO [NONEXISTENT] Mailbox doesn't exist: {args[0]}")
            return
        self.folder, self.readonly = folder, name == "EXAMINE"
        with self.server.lock:
            box = self.server.folders[folder]
            count, uidnext = len(box.messages), box.uidnext
        self.send(f"* FLAGS {FLAGS}")
        self.send("* OK [PERMANENTFLAGS ()] Read-only mailbox." if self.readonly
                  else f"* OK [PERMANENTFLAGS {FLAGS[:-1]} \\*)] Flags permitted.")
        self.send(f"* {count} EXISTS")
        self.send("* 0 RECENT")
        self.send(f"* OK [UIDVALIDITY {self.server.uidvalidity}] UIDs valid")
        self.send(f"* OK [UIDNEXT {uidnext}] Predicted next UID")
        self.send(f"{tag} OK [{'READ-ONLY' if self.readonly else 'READ-WRITE'}] {name.title()} completed.")

    # ------------------------------------------------------------------ SEARCH
    def search(self, tag: str, name: str, args: list[Any]) -> None:
        if len(args) >= 2 and isinstance(args[0], str) and args[0].upper() == "CHARSET":
            if str(args[1]).upper() not in ("UTF-8", "US-ASCII"):
                self.send(f"{tag} NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
                return
            args = args[2:]
        with self.server.lock:
            messages = list(self.server.folders[self.folder].messages)
        highest = messages[-1].uid if messages else 0
        test, rest = self.criteria(list(args) or ["ALL"], highest)
        if rest:
            raise BadCommand(f"unexpected {rest[0]!r}")
        found = [(seq, m) for seq, m in enumerate(messages, 1) if test(m, seq)]
        numbers = [m.uid if name == "UID SEARCH" else seq for seq, m in found]
        self.send("* SEARCH" + "".join(f" {n}" for n in numbers))
        self.send(f"{tag} OK Search completed.")

    def criteria(self, args: list[Any], highest: int):
        """All the keys in `args`, ANDed; returns a predicate and what's left (nothing)."""
        tests = []
        while args:
            test, args = self.key(args, highest)
            tests.append(test)
        return (lambda m, seq: all(t(m, seq) for t in tests)), args

    def key(self, args: list[Any], highest: int):
        head, args = args[0], args[1:]
        if isinstance(head, list):
            test, _rest = self.criteria(list(head), highest)
            return test, args
        word = head.upper()

        def value() -> str:
            if not args or not isinstance(args[0], str):
                raise BadCommand(f"{word} needs a value")
            return args.pop(0)

        args = list(args)
        if word == "ALL":
            return (lambda m, seq: True), args
        if word in ("SEEN", "UNSEEN"):
            return (lambda m, seq: ("\\Seen" in m.flags) == (word == "SEEN")), args
        if word in ("FROM", "TO", "CC", "SUBJECT"):
            needle = value().lower()
            header = word.title()
            return (lambda m, seq: needle in _header_text(m.parsed, header)), args
        if word in ("SINCE", "BEFORE", "ON"):
            try:
                day = imap_date(value())
            except (ValueError, IndexError):
                raise BadCommand(f"{word} needs a date like 1-Feb-2024") from None
            compare = {"SINCE": lambda d: d >= day, "BEFORE": lambda d: d < day, "ON": lambda d: d == day}[word]
            return (lambda m, seq: compare(m.received.date())), args
        if word == "UID":
            spec = value()
            return (lambda m, seq: in_set(m.uid, spec, highest)), args
        if word == "NOT":
            inner, args = self.key(args, highest)
            return (lambda m, seq: not inner(m, seq)), args
        if word == "OR":
            first, args = self.key(args, highest)
            second, args = self.key(args, highest)
            return (lambda m, seq: first(m, seq) or second(m, seq)), args
        raise BadCommand(f"unknown search key {head!r}")

    # ------------------------------------------------------------------ FETCH
    def fetch(self, tag: str, name: str, args: list[Any]) -> None:
        if len(args) != 2 or not isinstance(args[0], str):
            raise BadCommand("FETCH takes a message set and items")
        spec, items = args[0], args[1] if isinstance(args[1], list) else [args[1]]
        if not items or not all(isinstance(i, str) for i in items):
            raise BadCommand("bad fetch items")
        by_uid = name == "UID FETCH"
        if by_uid and not any(i.upper() == "UID" for i in items):
            items = ["UID", *items]
        with self.server.lock:
            messages = list(self.server.folders[self.folder].messages)
        highest = (messages[-1].uid if by_uid else len(messages)) if messages else 0
        for seq, message in enumerate(messages, 1):
            if in_set(message.uid if by_uid else seq, spec, highest):
                self.send(self.fetch_response(seq, message, items))
        self.send(f"{tag} OK Fetch completed.")

    def fetch_response(self, seq: int, message: Stored, items: list[str]) -> bytes:
        parts: list[bytes] = []
        for item in items:
            upper = item.upper()
            if upper == "UID":
                parts.append(f"UID {message.uid}".encode())
            elif upper == "FLAGS":
                parts.append(f"FLAGS ({' '.join(sorted(message.flags))})".encode())
            elif upper == "RFC822.SIZE":
                parts.append(f"RFC822.SIZE {len(message.raw)}".encode())
            elif upper == "INTERNALDATE":
                when = message.received.astimezone(UTC)
                stamp = f"{when.day:02d}-{MONTHS[when.month - 1]}-{when.year} {when:%H:%M:%S} +0000"
                parts.append(f'INTERNALDATE "{stamp}"'.encode())
            else:
                parts.append(self.section(message, item))
        return f"* {seq} FETCH (".encode() + b" ".join(parts) + b")"

    def section(self, message: Stored, item: str) -> bytes:
        match = _SECTION.match(item.upper())
        if match is None:
            raise BadCommand(f"unknown fetch item {item!r}")
        kind, section, start, length, rfc822 = match.groups()
        head, _, text = message.raw.partition(b"\r\n\r\n")
        if rfc822:
            data = {"RFC822": message.raw, "RFC822.HEADER": head + b"\r\n\r\n", "RFC822.TEXT": text}[rfc822]
            label = rfc822
        elif section == "":
            data, label = message.raw, "BODY[]"
        elif section == "HEADER":
            data, label = head + b"\r\n\r\n", "BODY[HEADER]"
        elif section == "TEXT":
            data, label = text, "BODY[TEXT]"
        else:
            raise BadCommand(f"section {section!r} is not supported by this fake")
        if start is not None:
            label += f"<{start}>"
            if not self.server.ignore_partial:
                data = data[int(start):int(start) + int(length)]
        if kind == "BODY" or rfc822 in ("RFC822", "RFC822.TEXT"):
            if not self.readonly:
                message.flags.add("\\Seen")
        return f"{label} {{{len(data)}}}\r\n".encode() + data


# ---------------------------------------------------------------------------- server

class FakeImapServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, username: str = "ada@example.com", password: str = "mailbox-password",
                 ssl_context: ssl.SSLContext | None = None, ignore_partial: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Session)
        self.username = username
        self.password = password
        self.ssl_context = ssl_context
        self.ignore_partial = ignore_partial
        self.uidvalidity = 1
        self.lock = threading.Lock()
        self.folders: dict[str, Folder] = {"INBOX": Folder()}
        self.commands: list[tuple[str, list[Any]]] = []  # LOGIN's password is recorded as ***
        self.login_attempts: list[tuple[str, bool]] = []
        self.connections = 0
        self._thread = threading.Thread(target=self.serve_forever, name="fake-imap", daemon=True)

    host = "127.0.0.1"

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self):
        sock, address = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address) -> None:
        # Clients that hang up (a size cap, a rejected certificate) are part of what's tested.
        pass

    def record(self, name: str, args: list[Any]) -> None:
        with self.lock:
            self.commands.append((name, args))

    def commands_named(self, name: str) -> list[list[Any]]:
        with self.lock:
            return [args for command, args in self.commands if command == name]

    def find(self, name: str) -> str | None:
        with self.lock:
            if name.upper() == "INBOX":
                return "INBOX"
            return name if name in self.folders else None

    def add(self, message: EmailMessage | bytes, *, folder: str = "INBOX", seen: bool = False,
            received: datetime | None = None) -> int:
        """Deliver a message; returns its UID."""
        if isinstance(message, EmailMessage):
            raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        else:
            raw = re.sub(rb"(?<!\r)\n", b"\r\n", message)
        with self.lock:
            box = self.folders.setdefault(folder, Folder())
            uid = box.uidnext
            box.uidnext += 1
            box.messages.append(Stored(uid=uid, raw=raw, flags={"\\Seen"} if seen else set(),
                                       received=received or datetime.now(UTC)))
        return uid

    def flags(self, uid: int, folder: str = "INBOX") -> set[str]:
        with self.lock:
            return next(set(m.flags) for m in self.folders[folder].messages if m.uid == uid)

    def start(self) -> FakeImapServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
