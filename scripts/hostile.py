#!/usr/bin/env python3
"""Hostile traffic against a running privasip proxy on loopback, measured.

Used by scripts/bench-hostile.sh, which starts the proxy and says what the
numbers mean. Every packet goes to 127.0.0.1; sources are 127.0.0.0/8
addresses (Linux answers for all of them on lo). Loops are bounded in
count and time.

  flood   forged-token REGISTERs at --rate for --secs from one address
          (a few sockets, so rotating source ports), while a real user
          registers with Digest from another address every --every s;
          prints CPU per forged request and each real REGISTER's time.
  junk    --count mixed requests that each try to make state (new user
          names, Call-IDs, branches, onion names, TCP connections) from
          many loopback sources, twice; prints the proxy's RSS before,
          after each pass, and after transactions time out.
  steady  the same mixed requests, never repeated, at --rate for --secs
          (background junk for scripts/soak.sh); prints how many went.
"""

import argparse
import hashlib
import json
import os
import random
import socket
import time

HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def register(local, user, domain, call_id, cseq, auth=""):
    return (
        f"REGISTER sip:{domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}{cseq}\r\n"
        f"Max-Forwards: 70\r\nTo: <sip:{user}@{domain}>\r\nFrom: <sip:{user}@{domain}>;tag=t{cseq}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n"
        f"{auth}Expires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def digest(user, realm, password, method, uri, nonce, nc, cnonce):
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()
    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    return md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


def recv_status(sock, deadline):
    while time.monotonic() < deadline:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None, None
        text = data.decode(errors="replace")
        code = int(text[8:11]) if text[8:11].isdigit() else 0
        if code != 100:
            return code, text
    return None, None


def real_register(proxy, domain, user, password, n):
    """One Digest registration from 127.0.0.2; seconds to the 200, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    local = "%s:%d" % s.getsockname()
    start = time.monotonic()
    deadline = start + 5
    call_id = f"real{n}x{random.getrandbits(32)}"
    s.sendto(register(local, user, domain, call_id, 1), proxy)
    code, text = recv_status(s, deadline)
    if code != 401:
        return None, code
    nonce = text.split('nonce="', 1)[1].split('"', 1)[0]
    uri = f"sip:{domain}"
    resp = digest(user, domain, password, "REGISTER", uri, nonce, "00000001", "c0ffee")
    auth = (
        f'Authorization: Digest username="{user}", realm="{domain}", nonce="{nonce}", '
        f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"\r\n'
    )
    s.sendto(register(local, user, domain, call_id, 2, auth), proxy)
    code, _ = recv_status(s, deadline)
    elapsed = time.monotonic() - start
    s.close()
    return (elapsed if code == 200 else None), code


def flood(args):
    proxy = ("127.0.0.1", args.port)
    socks = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    token = args.token
    # The strongest form: answer a real challenge of the proxy's, so that
    # every forged request carries a nonce it issued and gets past the
    # cheap checks to the token itself.
    probe = socks[0]
    probe.setblocking(True)
    probe.sendto(register("%s:%d" % probe.getsockname(), "bob", args.domain, "probe", 1), proxy)
    code, text = recv_status(probe, time.monotonic() + 5)
    probe.setblocking(False)
    nonce = text.split('nonce="', 1)[1].split('"', 1)[0] if code == 401 else "none"
    auth = (
        f'Authorization: Digest username="{token}", realm="{args.domain}", nonce="{nonce}", '
        f'uri="sip:{args.domain}", response="{"0" * 32}", algorithm=MD5, qop=auth, '
        f'nc=00000001, cnonce="c0ffee"\r\n'
    )
    head = (
        f"REGISTER sip:{args.domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKf"
    ).encode()
    tail1 = (
        f"\r\nMax-Forwards: 70\r\nTo: <sip:{token}@{args.domain}>\r\n"
        f"From: <sip:{token}@{args.domain}>;tag=f\r\nCall-ID: f"
    ).encode()
    tail2 = (
        "\r\nCSeq: 1 REGISTER\r\nContact: <sip:x@127.0.0.1:9>\r\n"
        + auth
        + "Content-Length: 0\r\n\r\n"
    ).encode()
    cpu0 = cpu_seconds(args.pid)
    t0 = time.monotonic()
    sent = 0
    real = []
    next_real = t0 + args.every / 2
    end = t0 + args.secs
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * args.rate)
        while sent < due:
            n = str(sent).encode()
            msg = head + n + tail1 + n + tail2
            try:
                socks[sent % len(socks)].sendto(msg, proxy)
            except BlockingIOError:
                pass
            sent += 1
        if now >= next_real and len(real) < args.real:
            real.append(real_register(proxy, args.domain, args.user, args.password, len(real)))
            next_real += args.every
        else:
            time.sleep(0.0005)
    wall = time.monotonic() - t0
    time.sleep(0.5)
    cpu = cpu_seconds(args.pid) - cpu0
    answers = {}
    for s in socks:
        while True:
            try:
                data = s.recv(65536)
            except (BlockingIOError, socket.timeout):
                break
            code = data[8:11].decode(errors="replace")
            answers[code] = answers.get(code, 0) + 1
    times = [r[0] for r in real]
    ok = [t for t in times if t is not None]
    out = {
        "forged_sent": sent,
        "seconds": round(wall, 2),
        "rate": round(sent / wall),
        "proxy_cpu_s": round(cpu, 2),
        "cpu_us_per_forged": round(1e6 * cpu / max(sent, 1), 1),
        "answers_left_in_socket_buffers": answers,
        "real_registers": len(real),
        "real_ok": len(ok),
        "real_ok_within_1s": sum(1 for t in ok if t <= 1.0),
        "real_ms": [None if t is None else round(1000 * t, 1) for t in times],
        "real_codes": [r[1] for r in real],
    }
    print(json.dumps(out))


def junk_messages(count, seed):
    """count (source, kind, bytes) that each try to create state."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        src = f"127.0.{1 + (i // 250) % 200}.{1 + i % 250}"
        tag = f"{seed}j{i}"
        kind = i % 5
        if kind == 0:  # a new user name (registrar, Digest counters)
            msg = register(f"{src}:5", f"u{tag}", "a.example", tag, 1)
        elif kind == 1:  # a new Call-ID to a user that is not there
            msg = (
                f"INVITE sip:n{tag}@a.example SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5;branch=z9hG4bK{tag}\r\n"
                f"Max-Forwards: 70\r\nTo: <sip:n{tag}@a.example>\r\nFrom: <sip:m@m.example>;tag={tag}\r\n"
                f"Call-ID: {tag}\r\nCSeq: 1 INVITE\r\nContact: <sip:m@{src}:5>\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        elif kind == 2:  # a new onion name (Tor routes) and a new branch
            onion = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(56))
            msg = (
                f"MESSAGE sip:x@{onion}.onion SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5;branch=z9hG4bK{tag}\r\n"
                f"Max-Forwards: 70\r\nTo: <sip:x@{onion}.onion>\r\nFrom: <sip:m@m.example>;tag={tag}\r\n"
                f"Call-ID: {tag}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        elif kind == 3:  # a stray response
            msg = (
                f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{5060};branch=z9hG4bKpsp{tag}.0.x\r\n"
                f"Via: SIP/2.0/UDP {src}:5;branch=z9hG4bK{tag}\r\nTo: <sip:a@a.example>;tag=1\r\n"
                f"From: <sip:m@m.example>;tag={tag}\r\nCall-ID: {tag}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        else:  # malformed
            msg = f"INVITE sip:{tag}@a.example SIP/2.0\r\nVia: garbage {tag}\r\n\r\n".encode()
        out.append((src, msg))
    return out


def junk(args):
    proxy = ("127.0.0.1", args.port)
    msgs = junk_messages(args.count, 1)
    report = {"rss_kib_before": rss_kib(args.pid)}
    for rnd in (1, 2):
        t0 = time.monotonic()
        for i, (src, msg) in enumerate(msgs):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((src, 0))
                s.setblocking(False)
                try:
                    s.sendto(msg, proxy)
                except BlockingIOError:
                    pass
            # Paced: each source stays inside its request budget, so every
            # request reaches the core and may try to make state.
            if i % 200 == 199:
                time.sleep(0.01)
        # TCP connections from many sources, each sending one request.
        conns = []
        for i in range(args.tcp):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.bind((f"127.1.{1 + i // 250}.{1 + i % 250}", 0))
            try:
                c.connect(proxy)
                c.sendall(msgs[i % len(msgs)][1].replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
            except OSError:
                pass
            conns.append(c)
        time.sleep(1)
        for c in conns:
            c.close()
        time.sleep(1)
        report[f"rss_kib_after_pass_{rnd}"] = rss_kib(args.pid)
        report[f"pass_{rnd}_seconds"] = round(time.monotonic() - t0, 1)
    # Server transactions live 32 s (Timer J / H); then only the bounded
    # maps remain.
    time.sleep(args.settle)
    report["rss_kib_after_settle"] = rss_kib(args.pid)
    report["requests_per_pass"] = len(msgs)
    report["tcp_per_pass"] = args.tcp
    print(json.dumps(report))


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def steady(args):
    import signal

    # Stopped early (the soak ends): still say how many went.
    signal.signal(signal.SIGTERM, _interrupt)
    proxy = ("127.0.0.1", args.port)
    t0 = time.monotonic()
    end = t0 + args.secs
    socks = {}
    try:
        steady_batches(args, proxy, socks, t0, end)
    except KeyboardInterrupt:
        pass
    for s in socks.values():
        s.close()
    print(json.dumps({"junk_sent": STEADY_SENT[0], "seconds": round(time.monotonic() - t0, 1)}), flush=True)


STEADY_SENT = [0]


def steady_batches(args, proxy, socks, t0, end):
    """One batch of args.rate junk requests a second until end."""
    seed = 1000
    while time.monotonic() < end:
        seed += 1
        for src, msg in junk_messages(args.rate, seed):
            s = socks.get(src)
            if s is None:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((src, 0))
                s.setblocking(False)
                socks[src] = s
            try:
                s.sendto(msg, proxy)
                STEADY_SENT[0] += 1
            except (BlockingIOError, OSError):
                pass
            # Drop what the proxy answered: only the load matters here.
            try:
                while s.recv(65536):
                    pass
            except (BlockingIOError, OSError):
                pass
        # One batch a second, whatever it cost to send.
        next_batch = t0 + (seed - 1000)
        time.sleep(max(0.0, min(next_batch, end) - time.monotonic()))


def main():
    # Thousands of TCP connections at once need more than 1024 descriptors.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--pid", type=int, required=True)
    f.add_argument("--token", required=True)
    f.add_argument("--domain", required=True)
    f.add_argument("--user", required=True)
    f.add_argument("--password", required=True)
    f.add_argument("--rate", type=int, default=20000)
    f.add_argument("--secs", type=float, default=30)
    f.add_argument("--real", type=int, default=10)
    f.add_argument("--every", type=float, default=2.5)
    j = sub.add_parser("junk")
    j.add_argument("--port", type=int, required=True)
    j.add_argument("--pid", type=int, required=True)
    j.add_argument("--count", type=int, default=100000)
    j.add_argument("--tcp", type=int, default=2000)
    j.add_argument("--settle", type=float, default=40)
    st = sub.add_parser("steady", help="junk at a steady rate, for a soak")
    st.add_argument("--port", type=int, required=True)
    st.add_argument("--rate", type=int, default=200)
    st.add_argument("--secs", type=float, default=60)
    args = p.parse_args()
    {"flood": flood, "junk": junk, "steady": steady}[args.cmd](args)


if __name__ == "__main__":
    main()
