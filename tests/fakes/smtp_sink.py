"""A loopback SMTP server that keeps what it receives: enough of RFC 5321 (EHLO/HELO, MAIL, RCPT,
DATA, RSET, NOOP, QUIT) for Django's SMTP backend to deliver to it over a real socket.

Optionally (for the Email connector) it asks for a login like a submission server: with
`credentials=(user, password)` it advertises AUTH PLAIN/LOGIN (RFC 4954), answers a wrong password
with 535 and refuses MAIL before a login with 530; with `ssl_context` it speaks TLS from the first
byte (SMTPS, port 465 style). Without them it behaves exactly as before.
"""

from __future__ import annotations

import base64
import binascii
import email
import socketserver
import ssl
import threading
from dataclasses import dataclass
from email.message import Message


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message
    user: str = ""  # who logged in (AUTH), when the sink asks for a login

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        return payload.decode(self.message.get_content_charset() or "utf-8") if payload else ""


def _address(argument: str) -> str:
    return argument.split(":", 1)[1].strip().split(" ")[0].strip("<>")


class _Session(socketserver.StreamRequestHandler):
    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def _read_answer(self) -> str:
        return self.rfile.readline(65536).decode("ascii", "replace").strip()

    def _auth(self, command: str) -> None:
        """AUTH PLAIN [initial] or AUTH LOGIN [initial]; replies 235, 535, 501 or 504."""
        parts = command.split()
        mechanism = parts[1].upper() if len(parts) > 1 else ""
        initial = parts[2] if len(parts) > 2 else None
        try:
            if mechanism == "PLAIN" and "PLAIN" in self.server.auth_methods:
                if initial is None:
                    self.reply("334 ")
                    initial = self._read_answer()
                if initial == "*":
                    self.reply("501 5.0.0 Authentication cancelled")
                    return
                _authzid, user, password = base64.b64decode(initial, validate=True).decode().split("\0")
            elif mechanism == "LOGIN" and "LOGIN" in self.server.auth_methods:
                if initial is None:
                    self.reply("334 VXNlcm5hbWU6")
                    initial = self._read_answer()
                user = base64.b64decode(initial, validate=True).decode()
                self.reply("334 UGFzc3dvcmQ6")
                password = base64.b64decode(self._read_answer(), validate=True).decode()
            else:
                self.reply("504 5.5.4 Unrecognized authentication type")
                return
        except (binascii.Error, UnicodeDecodeError, ValueError):
            self.reply("501 5.5.2 Cannot decode response")
            return
        ok = (user, password) == self.server.credentials
        self.server.auth_attempts.append((user, ok))
        if ok:
            self.user = user
            self.reply("235 2.7.0 Authentication successful")
        else:
            self.reply("535 5.7.8 Authentication credentials invalid")

    def handle(self) -> None:
        with self.server._arrived:
            self.server.connections += 1
        self.user = ""
        self.reply("220 sink.local ESMTP ready")
        sender, recipients = "", []
        asks_login = self.server.credentials is not None
        while line := self.rfile.readline(65536):
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = command[:4].upper()
            if verb == "EHLO" and asks_login:
                self.reply("250-sink.local")
                self.reply("250 AUTH " + " ".join(self.server.auth_methods))
            elif verb in ("EHLO", "HELO"):
                self.reply("250 sink.local")
            elif verb == "AUTH" and asks_login:
                if self.user:
                    self.reply("503 5.5.1 Already authenticated")
                else:
                    self._auth(command)
            elif verb == "MAIL" and asks_login and not self.user:
                self.reply("530 5.7.0 Authentication required")
            elif verb == "MAIL":
                sender, recipients = _address(command), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(_address(command))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (data := self.rfile.readline(1 << 20)) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)  # undo dot-stuffing
                self.server.received(Received(sender, recipients, email.message_from_bytes(b"".join(lines)),
                                              user=self.user))
                self.reply("250 OK: queued")
            elif verb in ("RSET", "NOOP"):
                sender, recipients = ("", []) if verb == "RSET" else (sender, recipients)
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, credentials: tuple[str, str] | None = None,
                 auth_methods: tuple[str, ...] = ("PLAIN", "LOGIN"), ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Session)
        self.credentials = credentials
        self.auth_methods = auth_methods
        self.ssl_context = ssl_context
        self.connections = 0  # TCP connections accepted, to prove a refused call never connected
        self.auth_attempts: list[tuple[str, bool]] = []  # (user, accepted); passwords aren't kept
        self.messages: list[Received] = []
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self.serve_forever, name="smtp-sink", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self):
        sock, address = super().get_request()
        if self.ssl_context is not None:
            # The handshake happens in the session's thread (setup), not in the accept loop.
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address) -> None:
        if self.ssl_context is None:
            super().handle_error(request, client_address)
        # With TLS, clients that reject the certificate hang up mid-handshake; that's expected.

    def received(self, item: Received) -> None:
        with self._arrived:
            self.messages.append(item)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def start(self) -> SmtpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
