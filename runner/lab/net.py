"""Tiny TCP/UDP servers and clients for lab checks, run inside lab namespaces.

    python -m runner.lab.net serve tcp|udp PORT [--seconds N]
    python -m runner.lab.net connect tcp|udp HOST PORT      # prints the reply
    python -m runner.lab.net watch HOST PORT [--interval S]  # a held flow, until SIGTERM
    python -m runner.lab.net sink HOST PORT                 # one TCP transfer: prints bytes
    python -m runner.lab.net send HOST PORT BYTES           # to a sink: exactly BYTES

A server answers every client with `<name> sees <client ip>`, so a test can
tell which NAT the packets went through. Servers stop by themselves.
"""

from __future__ import annotations

import argparse
import json
import signal
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
        threading.Thread(target=_answer, args=(conn, peer[0], name, end), daemon=True).start()


def _answer(conn: socket.socket, peer: str, name: str, end: float) -> None:
    """One reply per message, as long as the client keeps the connection."""
    with conn:
        conn.settimeout(5)
        try:
            while time.monotonic() < end and conn.recv(256):
                conn.sendall(f"{name} sees {peer}\n".encode())
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


def hold(host: str, port: int, seconds: float, timeout: float = 3.0) -> int:
    """Keep one TCP connection and exchange a message every 0.1 s for `seconds`;
    returns the number of round trips (it raises if one fails)."""
    n = 0
    with socket.create_connection((host, port), timeout=timeout) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            c.sendall(b"ping\n")
            if not c.recv(256):
                raise ConnectionError(f"closed after {n} round trips")
            n += 1
            time.sleep(0.1)
    return n


def watch(host: str, port: int, interval: float, timeout: float = 3.0) -> dict[str, object]:
    """Hold one TCP connection with a round trip every `interval` until SIGTERM; the
    result says whether it survived and the longest time between two answered round
    trips (the outage a change caused to this flow)."""
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    n, max_gap, error = 0, 0.0, ""
    with socket.create_connection((host, port), timeout=timeout) as c:
        c.settimeout(60)  # TCP retransmits carry the flow over an outage; only this ends it
        last = time.monotonic()
        while not stop:
            try:
                c.sendall(b"ping\n")
                if not c.recv(256):
                    error = f"closed after {n} round trips"
                    break
            except OSError as e:
                if stop:
                    break
                error = f"{e} after {n} round trips"
                break
            now = time.monotonic()
            max_gap, last, n = max(max_gap, now - last), now, n + 1
            time.sleep(interval)
    return {"round_trips": n, "max_gap_ms": round(max_gap * 1000, 1), "error": error}


def sink(host: str, port: int, timeout: float = 30.0) -> int:
    """Accept one TCP connection and count what it sends until it closes (a transfer of a
    size known at both ends, for byte counts)."""
    with socket.create_server((host, port)) as srv:
        srv.settimeout(timeout)
        conn, _ = srv.accept()
        n = 0
        with conn:
            while data := conn.recv(1 << 16):
                n += len(data)
        return n


def send(host: str, port: int, size: int, timeout: float = 30.0) -> None:
    """Send exactly `size` bytes to a sink and wait until it has them all."""
    chunk = b"x" * (1 << 16)
    with socket.create_connection((host, port), timeout=timeout) as c:
        while size > 0:
            size -= c.send(chunk[:size])
        c.shutdown(socket.SHUT_WR)
        c.recv(1)


def connect(proto: str, host: str, port: int, timeout: float = 3.0, source: str = "") -> str:
    if proto == "tcp":
        with socket.create_connection((host, port), timeout=timeout,
                                      source_address=(source, 0) if source else None) as c:
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
    c.add_argument("--source", default="", help="the TCP client's source address")
    c.add_argument("--hold", type=float, default=0.0,
                   help="keep the TCP connection this many seconds, one round trip each 0.1 s")
    w = sub.add_parser("watch")
    w.add_argument("host")
    w.add_argument("port", type=int)
    w.add_argument("--interval", type=float, default=0.01)
    k = sub.add_parser("sink")
    k.add_argument("host")
    k.add_argument("port", type=int)
    d = sub.add_parser("send")
    d.add_argument("host")
    d.add_argument("port", type=int)
    d.add_argument("bytes", type=int)
    a = ap.parse_args()
    if a.cmd == "watch":
        try:
            print(json.dumps(watch(a.host, a.port, a.interval)), flush=True)
            return 0
        except OSError as e:
            print(json.dumps({"round_trips": 0, "max_gap_ms": 0, "error": str(e)}), flush=True)
            return 1
    if a.cmd in ("sink", "send"):
        if a.cmd == "sink":
            print(sink(a.host, a.port), flush=True)
        else:
            send(a.host, a.port, a.bytes)
        return 0
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
        if a.hold:
            print(f"{hold(a.host, a.port, a.hold, a.timeout)} round trips")
        else:
            print(connect(a.proto, a.host, a.port, a.timeout, a.source))
        return 0
    except OSError as e:
        print(f"failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
