#!/usr/bin/env python3
"""An introduction flood against an onion service, and a real client's
connection time to it meanwhile (scripts/bench-onion-flood.sh).

Every connection goes through a tor client's SOCKS port with a username
of its own, so tor (IsolateSOCKSAuth) builds it a circuit of its own: each
one is an introduction and a rendezvous at the service. The flood closes
each connection as soon as it is made; the probe times one connection
every few seconds, first alone (baseline), then during the flood.
Loopback only: the SOCKS address must be in 127.0.0.0/8.
"""

import argparse
import ipaddress
import json
import socket
import statistics
import struct
import sys
import threading
import time


def socks_connect(socks, user, host, port, timeout):
    """Seconds until tor says the stream is open, or None on failure."""
    start = time.monotonic()
    s = socket.create_connection(socks, timeout=timeout)
    try:
        s.settimeout(timeout)
        s.sendall(b"\x05\x01\x02")
        if s.recv(2) != b"\x05\x02":
            return None
        u, p = user.encode(), b"x"
        s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        if s.recv(2) != b"\x01\x00":
            return None
        h = host.encode()
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(h)]) + h + struct.pack(">H", port))
        reply = s.recv(10)
        if len(reply) < 2 or reply[1] != 0:
            return None
        return time.monotonic() - start
    except OSError:
        return None
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--socks", required=True, help="tor client's SOCKS, 127.0.0.1:PORT")
    ap.add_argument("--onion", required=True)
    ap.add_argument("--port", type=int, default=5060)
    ap.add_argument("--baseline", type=float, default=20, help="seconds of probing alone")
    ap.add_argument("--flood", type=float, default=60, help="seconds of flood")
    ap.add_argument("--workers", type=int, default=48, help="flood connections at once")
    ap.add_argument("--every", type=float, default=3, help="seconds between probes")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--tag", default="run")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    host, port = a.socks.rsplit(":", 1)
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("the SOCKS port must be on loopback")
    socks = (host, int(port))
    counter = iter(range(10**9))
    lock = threading.Lock()

    def fresh():
        with lock:
            return f"{a.tag}-{next(counter)}"

    def probe_for(seconds):
        times, failed = [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = socks_connect(socks, "probe-" + fresh(), a.onion, a.port, a.timeout)
            if t is None:
                failed += 1
            else:
                times.append(t)
            time.sleep(a.every)
        return times, failed

    base, base_failed = probe_for(a.baseline)
    stop = threading.Event()
    made = [0, 0]  # opened, failed

    def flooder():
        while not stop.is_set():
            ok = socks_connect(socks, "flood-" + fresh(), a.onion, a.port, a.timeout)
            with lock:
                made[0 if ok is not None else 1] += 1

    threads = [threading.Thread(target=flooder, daemon=True) for _ in range(a.workers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    under, under_failed = probe_for(a.flood)
    stop.set()
    elapsed = time.monotonic() - started
    for t in threads:
        t.join(timeout=a.timeout + 5)

    def summary(times, failed):
        return {
            "probes": len(times) + failed,
            "failed": failed,
            "median_s": round(statistics.median(times), 3) if times else None,
            "max_s": round(max(times), 3) if times else None,
        }

    result = {
        "tag": a.tag,
        "baseline": summary(base, base_failed),
        "under_flood": summary(under, under_failed),
        "flood_connections": made[0],
        "flood_failures": made[1],
        "flood_rate_per_s": round((made[0] + made[1]) / elapsed, 1),
        "workers": a.workers,
        "flood_seconds": round(elapsed, 1),
    }
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
