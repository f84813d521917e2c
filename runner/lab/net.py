"""Tiny TCP/UDP servers and clients for lab checks, run inside lab namespaces.

    python -m runner.lab.net serve tcp|udp PORT [--seconds N]
    python -m runner.lab.net connect tcp|udp HOST PORT      # prints the reply

A server answers every client with `<name> sees <client ip>`, so a test can
tell which NAT the packets went through. Servers stop by themselves.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time


def serve_tcp(port: int, name: str, seconds: float) -> None:
    srv = socket.create_server(("0.0.0.0", port), reuse_port=True)
    srv.settimeout(0.5)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            conn, peer = srv.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(256)
                conn.sendall(f"{name} sees {peer[0]}\n".encode())
            except OSError:
                pass


def serve_udp(port: int, name: str, seconds: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.5)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            _, peer = s.recvfrom(256)
        except TimeoutError:
            continue
        s.sendto(f"{name} sees {peer[0]}\n".encode(), peer)


def connect(proto: str, host: str, port: int, timeout: float = 3.0) -> str:
    if proto == "tcp":
        with socket.create_connection((host, port), timeout=timeout) as c:
            c.sendall(b"hello\n")
            return c.recv(256).decode().strip()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(b"hello\n", (host, port))
        return s.recvfrom(256)[0].decode().strip()


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("proto", choices=["tcp", "udp", "both"])
    s.add_argument("port", type=int)
    s.add_argument("--name", default=socket.gethostname())
    s.add_argument("--seconds", type=float, default=600)
    c = sub.add_parser("connect")
    c.add_argument("proto", choices=["tcp", "udp"])
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    if a.cmd == "serve":
        threads = []
        for proto in (["tcp", "udp"] if a.proto == "both" else [a.proto]):
            fn = serve_tcp if proto == "tcp" else serve_udp
            threads.append(threading.Thread(target=fn, args=(a.port, a.name, a.seconds)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return 0
    try:
        print(connect(a.proto, a.host, a.port, a.timeout))
        return 0
    except OSError as e:
        print(f"failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
