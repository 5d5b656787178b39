"""An external repository for push tests: a plain HTTP server that takes every upload.

devpi pushes to an external repository with the upload API twine speaks (a multipart
POST per file). The tests only need what arrived, so this keeps each request's path and
form and answers 200.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Upload:
    path: str
    form: dict[str, tuple[str | None, bytes]]  # field name -> (file name, value)


@dataclass
class Receiver:
    url: str
    got: list[Upload] = field(default_factory=list)


def _parse_form(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    message = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        return {}
    return {part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in message.iter_parts()}


@contextmanager
def upload_receiver() -> Iterator[Receiver]:
    """A running receiver on 127.0.0.1; its ``url`` is the upload URL (``/legacy/``)."""
    receiver = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            form = _parse_form(self.headers.get("Content-Type") or "", body)
            receiver.got.append(Upload(self.path, form))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/legacy/"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
