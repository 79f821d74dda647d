"""A loopback SMTP server that keeps what it receives: enough of RFC 5321 (EHLO/HELO, MAIL, RCPT,
DATA, RSET, NOOP, QUIT) for Django's SMTP backend to deliver to it over a real socket."""

from __future__ import annotations

import email
import socketserver
import threading
from dataclasses import dataclass
from email.message import Message


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        return payload.decode(self.message.get_content_charset() or "utf-8") if payload else ""


def _address(argument: str) -> str:
    return argument.split(":", 1)[1].strip().split(" ")[0].strip("<>")


class _Session(socketserver.StreamRequestHandler):
    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 sink.local ESMTP ready")
        sender, recipients = "", []
        while line := self.rfile.readline(65536):
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink.local")
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
                self.server.received(Received(sender, recipients, email.message_from_bytes(b"".join(lines))))
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

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Session)
        self.messages: list[Received] = []
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self.serve_forever, name="smtp-sink", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

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
