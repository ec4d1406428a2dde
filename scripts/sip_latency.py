#!/usr/bin/env python3
"""INVITE->180 latency through a proxy, from a tcpdump capture.

    python3 scripts/sip_latency.py CAPTURE.pcap --proxy-port 35060 [--json OUT]

For each call (Call-ID) it takes the first INVITE sent *to* the proxy
port and the first 180 sent *from* the proxy port, both on the caller's
side of the proxy, and reports the time between them: what the caller
would see, measured on the wire with tcpdump's timestamps (use
`--time-stamp-precision=nano`). SIPp's own response times are no use
here: they tick in 4 ms steps on this kernel.

Reads classic pcap (micro- or nanosecond) over Ethernet, Linux cooked
(v1, v2), BSD loopback or raw IP; IPv4 and IPv6; SIP over UDP and over
TCP (streams are reassembled and split on Content-Length). Standard
library only. Prints one line of JSON unless --json names a file.
"""

import argparse
import json
import re
import struct
import sys

MAGIC = {
    0xA1B2C3D4: ("<", 1e-6),
    0xA1B23C4D: ("<", 1e-9),
    0xD4C3B2A1: (">", 1e-6),
    0x4D3CB2A1: (">", 1e-9),
}

CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", re.I | re.M)
CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
CSEQ = re.compile(rb"^cseq[ \t]*:[ \t]*\d+[ \t]+(\S+)", re.I | re.M)
START = re.compile(rb"(?:SIP/2\.0 \d{3} |[A-Z]+ sip:)")


def packets(path):
    """Yields (timestamp in seconds, link type, frame bytes)."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = struct.unpack("<I", head[:4])[0]
        if magic not in MAGIC:
            sys.exit(f"{path}: not a classic pcap file (pcapng is not read here)")
        order, unit = MAGIC[magic]
        link = struct.unpack(order + "I", head[20:24])[0]
        rec = struct.Struct(order + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, caplen, _ = rec.unpack(h)
            data = f.read(caplen)
            if len(data) < caplen:
                return
            yield sec + frac * unit, link, data


def ip_of(link, frame):
    """The IP packet inside a frame, or None."""
    if link == 1:  # Ethernet (what tcpdump -i lo gives on Linux)
        kind = struct.unpack("!H", frame[12:14])[0]
        return frame[14:] if kind in (0x0800, 0x86DD) else None
    if link == 113:  # Linux cooked v1
        return frame[16:]
    if link == 276:  # Linux cooked v2
        return frame[20:]
    if link in (0, 108):  # BSD loopback
        return frame[4:]
    if link in (12, 101):  # raw IP
        return frame
    sys.exit(f"link type {link} is not read here")


def transport_of(ip):
    """(protocol, source address, destination address, layer-4 bytes)."""
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        return ip[9], ip[12:16], ip[16:20], ip[ihl:total]
    if version == 6:  # no extension headers on loopback SIP
        length = struct.unpack("!H", ip[4:6])[0]
        return ip[6], ip[8:24], ip[24:40], ip[40 : 40 + length]
    return None


def split_messages(buf):
    """Complete SIP messages at the start of buf, and what is left."""
    out = []
    while True:
        buf = buf.lstrip(b"\r\n")  # keep-alives
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return out, buf
        m = CONTENT_LENGTH.search(buf[: end + 4])
        size = end + 4 + (int(m.group(1)) if m else 0)
        if len(buf) < size:
            return out, buf
        out.append(buf[:size])
        buf = buf[size:]


class Stream:
    """One direction of a TCP connection, reassembled in order."""

    def __init__(self):
        self.next_seq = None
        self.buf = b""

    def feed(self, seq, payload):
        if self.next_seq is not None:
            ahead = (seq - self.next_seq) & 0xFFFFFFFF
            if ahead >= 0x80000000:  # old bytes again (retransmission)
                behind = (self.next_seq - seq) & 0xFFFFFFFF
                if behind >= len(payload):
                    return []
                payload = payload[behind:]
                seq = self.next_seq
            elif ahead:  # a gap: the capture lost bytes; resynchronise
                self.buf = b""
                m = START.search(payload)
                self.next_seq = (seq + len(payload)) & 0xFFFFFFFF
                if not m:
                    return []
                payload = payload[m.start() :]
                seq = None
        if seq is not None:
            self.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        msgs, self.buf = split_messages(self.buf + payload)
        return msgs


def sip_messages(path):
    """Yields (time, source port, destination port, message bytes)."""
    streams = {}
    for t, link, frame in packets(path):
        parts = transport_of(ip_of(link, frame))
        if not parts:
            continue
        proto, src, dst, l4 = parts
        if proto == 17 and len(l4) >= 8:
            sport, dport = struct.unpack("!HH", l4[:4])
            for m in split_messages(l4[8:])[0]:
                yield t, sport, dport, m
        elif proto == 6 and len(l4) >= 20:
            sport, dport, seq = struct.unpack("!HHI", l4[:8])
            flags = l4[13]
            key = (src, sport, dst, dport)
            if flags & 0x02:  # SYN: the stream starts after it
                s = streams[key] = Stream()
                s.next_seq = (seq + 1) & 0xFFFFFFFF
                continue
            payload = l4[(l4[12] >> 4) * 4 :]
            if not payload:
                continue
            s = streams.setdefault(key, Stream())
            for m in s.feed(seq, payload):
                yield t, sport, dport, m


def percentile(sorted_values, p):
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def measure(path, proxy_port):
    invite = {}  # Call-ID -> time the first INVITE reached the proxy
    ringing = {}  # Call-ID -> time the first 180 left the proxy
    messages = 0
    for t, sport, dport, m in sip_messages(path):
        messages += 1
        first = m[: m.find(b"\r\n")]
        cid = CALL_ID.search(m)
        cseq = CSEQ.search(m)
        if not cid or not cseq or cseq.group(1).upper() != b"INVITE":
            continue
        cid = cid.group(1)
        if dport == proxy_port and first.startswith(b"INVITE "):
            invite.setdefault(cid, t)
        elif sport == proxy_port and first.startswith(b"SIP/2.0 180"):
            ringing.setdefault(cid, t)
    lat = sorted(ringing[c] - invite[c] for c in invite if c in ringing)
    lat = [x for x in lat if x >= 0]
    us = lambda x: None if x is None else round(x * 1e6, 1)  # noqa: E731
    return {
        "capture": path,
        "sip_messages": messages,
        "invites": len(invite),
        "with_180": len(lat),
        "p50_us": us(percentile(lat, 50)),
        "p90_us": us(percentile(lat, 90)),
        "p99_us": us(percentile(lat, 99)),
        "max_us": us(lat[-1] if lat else None),
        "min_us": us(lat[0] if lat else None),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--proxy-port", type=int, default=5060)
    ap.add_argument("--json", help="write the result here instead of stdout")
    a = ap.parse_args()
    r = measure(a.capture, a.proxy_port)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    else:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
