"""Listeners that no mail server would be, for `proxydiag probe` to ask (issue 28, item 4).

Run as its own process, so a test stops it by process id and it ends by itself after its
lifetime whatever happens:

    python3 tests/hostile_listeners.py MODE ADDRESS PORT LIFETIME [CERT KEY]

Modes: `endless-greeting` ("220 " and then bytes without end, no newline), `endless-lines`
("220-x" continuation lines without end, each its own segment), `trickle-lines` (the same,
one every 20 ms: never a limit, never a whole greeting), `tls-imap` (implicit TLS with the
given certificate, then a polite IMAP greeting and replies).
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import sys
import threading
import time


def endless_greeting(conn: socket.socket) -> None:
    conn.sendall(b"220 ")
    chunk = b"A" * 65536
    while True:
        conn.sendall(chunk)


def endless_lines(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        conn.send(b"220-x\r\n")


def trickle_lines(conn: socket.socket) -> None:
    while True:
        conn.send(b"220-x\r\n")
        time.sleep(0.02)


def tls_imap(conn: socket.socket, context: ssl.SSLContext) -> None:
    with context.wrap_socket(conn, server_side=True) as tls:
        tls.sendall(b"* OK IMAP ready\r\n")
        for line in tls.makefile("rb"):
            tag = line.split(b" ", 1)[0]
            if b"LOGOUT" in line.upper():
                tls.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            tls.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")


def serve(mode: str, address: str, port: int, lifetime: float, cert: str | None, key: str | None) -> None:
    context = None
    if mode == "tls-imap":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    handlers = {"endless-greeting": endless_greeting, "endless-lines": endless_lines, "trickle-lines": trickle_lines,
                "tls-imap": lambda conn: tls_imap(conn, context)}
    handler = handlers[mode]

    def handle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), conn:
            handler(conn)

    listener = socket.create_server((address, port))
    listener.settimeout(0.2)
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
    os._exit(0)  # the lifetime is up: the threads still sending end with the process


if __name__ == "__main__":
    mode, address, port, lifetime, *files = sys.argv[1:]
    serve(mode, address, int(port), float(lifetime), *(files or [None, None]))
