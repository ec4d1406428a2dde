//! The proxy core's own cost of one call, without sockets: what
//! `scripts/bench-proxy.sh` measures end to end (SIPp's uac_rr/uas_rr
//! scenarios through a record-routing proxy), here on virtual time, with
//! topology hiding off and on every link. Only the proxy's work is timed;
//! the two user agents' messages are built outside the clock.
//!
//! ```sh
//! cargo bench -p privasip-benches --bench proxy_call
//! ```

// Benches need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use privasip_digest::Algorithm;
use privasip_message::{ContactValue, HeaderName, Limits, Message};
use privasip_proxy::{Hiding, Next, Origin, Proxy, ProxyConfig, RelayPolicy};

/// The two user agents, as the proxy's peers.
const UAC: &str = "uac";
const UAS: &str = "uas";

/// Calls a second on the virtual clock (timers fire as in the real bench).
const SPACING: Duration = Duration::from_micros(250);

fn proxy(hiding: Hiding) -> Proxy<&'static str> {
    let loopback = "127.0.0.0/8".parse().expect("a network");
    let cfg = ProxyConfig {
        digest: vec![Algorithm::Md5],
        relay: RelayPolicy {
            trusted: vec![loopback],
            allow_networks: vec![loopback],
            ..RelayPolicy::default()
        },
        ..ProxyConfig::new("b.example", "127.0.0.1:5060")
    };
    let mut p = Proxy::new(
        cfg,
        Box::new(|host: &str, port: Option<u16>, _t: &str| {
            let peer = match (host, port) {
                ("127.0.0.1", Some(5061)) => UAC,
                ("127.0.0.1", Some(5062)) => UAS,
                _ => return None,
            };
            Some(Next {
                peer,
                reliable: false,
            })
        }),
        [9; 32],
        Instant::now(),
    );
    p.set_origin(Box::new(|_| Origin::Ip([127, 0, 0, 1].into())));
    p.set_topology_hiding(hiding);
    p
}

const SDP: &str = "v=0\r\no=- 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
                   c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n\
                   a=rtpmap:0 PCMU/8000\r\n";

fn invite(n: u64) -> Vec<u8> {
    format!(
        "INVITE sip:service@127.0.0.1:5062 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-1\r\n\
         From: <sip:caller@127.0.0.1:5061>;tag={n}uac\r\n\
         To: <sip:service@127.0.0.1:5062>\r\n\
         Call-ID: {n}-bench@127.0.0.1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:caller@127.0.0.1:5061;transport=udp>\r\n\
         Max-Forwards: 70\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
    .into_bytes()
}

/// The uas's answer to the request it received, `[last_*]` style.
fn answer(request: &[u8], status: &str, to_tag: bool, record_route: bool, sdp: bool) -> Vec<u8> {
    let m = Message::parse_datagram(request, &Limits::default()).expect("the proxy's output");
    let mut out = format!("SIP/2.0 {status}\r\n");
    for v in m.values(HeaderName::Via) {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for (name, h) in [
        ("From", HeaderName::From),
        ("To", HeaderName::To),
        ("Call-ID", HeaderName::CallId),
        ("CSeq", HeaderName::CSeq),
    ] {
        let v = m.values(h).next().unwrap_or_default();
        let tag = if to_tag && name == "To" {
            ";tag=uas"
        } else {
            ""
        };
        out.push_str(&format!("{name}: {v}{tag}\r\n"));
    }
    if record_route {
        for v in m.values(HeaderName::RecordRoute) {
            out.push_str(&format!("Record-Route: {v}\r\n"));
        }
    }
    out.push_str("Contact: <sip:callee@127.0.0.1:5062;transport=udp>\r\n");
    if sdp {
        out.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ));
    } else {
        out.push_str("Content-Length: 0\r\n\r\n");
    }
    out.into_bytes()
}

/// The uac's ACK or BYE after `ok` (the 200 to its INVITE it received).
fn in_dialog(ok: &[u8], n: u64, method: &str, cseq: u32) -> Vec<u8> {
    let m = Message::parse_datagram(ok, &Limits::default()).expect("the proxy's output");
    let target = match m.contacts() {
        Some(ContactValue::Addrs(addrs)) => addrs.first().expect("a Contact").uri_raw.to_owned(),
        _ => panic!("a Contact"),
    };
    let mut routes: Vec<&str> = m.values(HeaderName::RecordRoute).collect();
    routes.reverse();
    let to = m.values(HeaderName::To).next().unwrap_or_default();
    let mut out = format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-{cseq}{method}\r\n\
         From: <sip:caller@127.0.0.1:5061>;tag={n}uac\r\nTo: {to}\r\n\
         Call-ID: {n}-bench@127.0.0.1\r\nCSeq: {cseq} {method}\r\n"
    );
    for r in routes {
        out.push_str(&format!("Route: {r}\r\n"));
    }
    out.push_str(
        "Contact: <sip:caller@127.0.0.1:5061;transport=udp>\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    );
    out.into_bytes()
}

/// What `sent` holds for `peer` (the proxy forwarded it there).
fn sent_to(sent: Vec<(&'static str, Vec<u8>)>, peer: &str) -> Vec<u8> {
    sent.into_iter()
        .find(|(to, _)| *to == peer)
        .map(|(_, bytes)| bytes)
        .unwrap_or_else(|| panic!("nothing forwarded to {peer}"))
}

/// Runs one call through `p`, timing only the proxy; returns that time.
fn call(p: &mut Proxy<&'static str>, now: Instant, n: u64) -> Duration {
    let mut spent = Duration::ZERO;
    let mut step = |p: &mut Proxy<&'static str>, bytes: &[u8], from: &'static str| {
        let start = Instant::now();
        p.receive(now, bytes, from, false);
        let out: Vec<_> = std::iter::from_fn(|| p.poll_transmit())
            .map(|t| (t.to, t.bytes))
            .collect();
        spent += start.elapsed();
        out
    };
    let fwd = sent_to(step(p, &invite(n), UAC), UAS);
    step(p, &answer(&fwd, "180 Ringing", true, true, false), UAS);
    let ok = sent_to(step(p, &answer(&fwd, "200 OK", true, true, true), UAS), UAC);
    step(p, &in_dialog(&ok, n, "ACK", 1), UAC);
    let bye = sent_to(step(p, &in_dialog(&ok, n, "BYE", 2), UAC), UAS);
    step(p, &answer(&bye, "200 OK", false, false, false), UAS);
    spent
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("proxy call (INVITE, 180, 200, ACK, BYE, 200)");
    for (name, hiding) in [("hiding off", Hiding::Off), ("hiding on", Hiding::All)] {
        g.bench_function(name, |b| {
            let mut p = proxy(hiding);
            let mut now = Instant::now();
            let mut n = 0u64;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    now += SPACING;
                    if p.poll_timeout().is_some_and(|at| at <= now) {
                        let start = Instant::now();
                        p.handle_timeout(now);
                        while p.poll_transmit().is_some() {}
                        total += start.elapsed();
                    }
                    total += call(&mut p, now, n);
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
