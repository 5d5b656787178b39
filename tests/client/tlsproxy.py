"""A TLS front that demands a client certificate, like an nginx with ``ssl_verify_client on``.

``ClientCertProxy(tmp)`` makes a throwaway CA, a server certificate for
127.0.0.1 and a client certificate (``client_pem``: certificate and key in one
file, what ``devpi use --client-cert`` takes) with the openssl command, listens
on 127.0.0.1 and, once a server is given, passes the bytes of every connection
that presents a certificate of that CA on to it. A connection without one fails
in the TLS handshake, as it would at the real proxy.
"""
from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=120)


def make_certs(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=devpi test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)
    (d / "client.pem").write_text((d / "client.crt").read_text() + (d / "client.key").read_text())


class ClientCertProxy:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        make_certs(tmp)
        self.ca_pem = tmp / "ca.pem"
        self.client_pem = tmp / "client.pem"
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tmp / "server.crt", tmp / "server.key")
        self.context.load_verify_locations(self.ca_pem)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.backend_port = 0
        self.refused = 0  # handshakes that failed (no or a wrong certificate)
        self.stopping = False

    def start(self, backend_port: int) -> ClientCertProxy:
        self.backend_port = backend_port
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.sock.close()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1
            conn.close()
            return
        try:
            backend = socket.create_connection(("127.0.0.1", self.backend_port), timeout=60)
        except OSError:
            tls.close()
            return
        threading.Thread(target=_pump, args=(backend, tls), daemon=True).start()
        _pump(tls, backend)

    def __enter__(self) -> ClientCertProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
