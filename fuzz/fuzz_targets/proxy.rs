//! The whole proxy core, driven by arbitrary sequences of events: raw
//! datagrams, mutated well-formed requests, answers to what the proxy sent
//! (so transactions, forking, stray responses and dialogs get exercised),
//! replays, lost connections and time passing. Never a panic, and
//! everything the proxy sends parses and validates.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use privasip_digest::Algorithm;
use privasip_identity::{Keyring, PrivateKey, SchemeId};
use privasip_message::{Limits, Message};
use privasip_proxy::{Credentials, Next, Origin, Proxy, ProxyConfig, RelayPolicy, response_for};
use privasip_registrar::RegistrarConfig;

const PEERS: [&str; 6] = ["lo", "alice", "tor", "lan", "named", "v6"];

fn origin(p: &&'static str) -> Origin {
    let ip = |s: &str| Origin::Ip(s.parse().expect("address"));
    match *p {
        "lo" => ip("127.0.0.1"),
        "alice" => ip("203.0.113.1"),
        "tor" => Origin::Tor { circuit: None },
        "lan" => ip("192.168.1.2"),
        "v6" => ip("::1"),
        _ => Origin::Unknown,
    }
}

/// A key made once (key generation is slow), as text.
fn key_text() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(7);
        PrivateKey::generate(SchemeId::Hpke, 0, &mut rng)
            .expect("key")
            .to_text()
            .to_string()
    })
}

fn proxy(t0: Instant, authenticate: bool) -> Proxy<&'static str> {
    let cfg = ProxyConfig {
        domains: vec!["b.example".into()],
        sent_by: "192.0.2.10:5060".into(),
        record_route: true,
        authenticate,
        registrar: RegistrarConfig {
            max_aors: 64,
            ..RegistrarConfig::default()
        },
        digest: vec![Algorithm::Sha256, Algorithm::Md5],
        relay: RelayPolicy {
            trusted: vec!["127.0.0.1".parse().expect("net")],
            routed_domains: vec!["c.example".into()],
            ..RelayPolicy::default()
        },
    };
    let mut p = Proxy::new(
        cfg,
        Box::new(|host: &str, _port: Option<u16>, _t: &str| {
            let peer = match host {
                "a.host" => "alice",
                "127.0.0.1" => "lo",
                "c.example" | "192.168.1.2" => "lan",
                "[::1]" => "v6",
                h if privasip_tor_like(h) => "tor",
                _ => return None,
            };
            Some(Next {
                peer,
                reliable: peer == "tor",
            })
        }),
        [1; 32],
        t0,
    );
    p.set_origin(Box::new(origin));
    p.set_user(
        "b.example",
        "bob",
        Credentials::from_password("bob", "b.example", "zanzibar"),
    );
    let mut ring = Keyring::default();
    ring.add_key(
        PrivateKey::from_text(key_text())
            .expect("key text")
            .into_decryptor(),
    );
    p.set_keyring(ring);
    p.set_token_budget(5, 5);
    p
}

fn privasip_tor_like(h: &str) -> bool {
    h.len() > 6 && h.as_bytes()[h.len() - 6..].eq_ignore_ascii_case(b".onion")
}

/// Well-formed starting points, mutated by replacing one line's value.
const TEMPLATES: [&str; 5] = [
    "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.host;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:bob@b.example>\r\nFrom: <sip:alice@a.example>;tag=a\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@a.host>\r\nContent-Length: 0\r\n\r\n",
    "REGISTER sip:b.example SIP/2.0\r\nVia: SIP/2.0/TCP f.invalid;branch=z9hG4bK2\r\nMax-Forwards: 70\r\nTo: <sip:bob@b.example>\r\nFrom: <sip:bob@b.example>;tag=r\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@f.invalid;transport=tcp;ob>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
    "BYE sip:alice@a.host SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK3\r\nMax-Forwards: 70\r\nRoute: <sip:192.0.2.10:5060;lr;psr=x>\r\nTo: <sip:alice@a.example>;tag=a\r\nFrom: <sip:bob@b.example>;tag=b\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKpsp0.0.x\r\nVia: SIP/2.0/UDP a.host;branch=z9hG4bK1\r\nTo: <sip:bob@b.example>;tag=b\r\nFrom: <sip:alice@a.example>;tag=a\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    "CANCEL sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.host;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:bob@b.example>\r\nFrom: <sip:alice@a.example>;tag=a\r\nCall-ID: c1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
];

#[derive(Arbitrary, Debug)]
enum Op {
    /// Any bytes from a peer.
    Raw { peer: u8, reliable: bool, bytes: Vec<u8> },
    /// A template with one line's value replaced.
    Mutated { peer: u8, which: u8, line: u8, value: String },
    /// A peer answers one of the requests the proxy sent it.
    Answer { which: u8, status: u16, tag: u8 },
    /// Something the proxy sent comes back in, from any peer.
    Replay { which: u8, peer: u8 },
    /// A connection goes away.
    Closed { peer: u8 },
    /// Time passes.
    Wait { millis: u16, seconds: u8 },
}

fn peer(n: u8) -> &'static str {
    PEERS[usize::from(n) % PEERS.len()]
}

fn mutate(which: u8, line: u8, value: &str) -> Vec<u8> {
    let t = TEMPLATES[usize::from(which) % TEMPLATES.len()];
    let lines: Vec<&str> = t.split("\r\n").collect();
    let n = usize::from(line) % lines.len();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        if i == n {
            match l.split_once(": ") {
                Some((name, _)) => out.extend_from_slice(format!("{name}: {value}").as_bytes()),
                None => out.extend_from_slice(value.as_bytes()),
            }
        } else {
            out.extend_from_slice(l.as_bytes());
        }
    }
    out
}

fuzz_target!(|input: (bool, Vec<Op>)| {
    let (authenticate, ops) = input;
    static T0: OnceLock<Instant> = OnceLock::new();
    let t0 = *T0.get_or_init(Instant::now);
    let mut now = t0;
    let mut p = proxy(t0, authenticate);
    let limits = Limits::default();
    let mut sent: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for op in ops.into_iter().take(64) {
        match op {
            Op::Raw { peer: n, reliable, bytes } => p.receive(now, &bytes, peer(n), reliable),
            Op::Mutated { peer: n, which, line, value } => {
                p.receive(now, &mutate(which, line, &value), peer(n), false)
            }
            Op::Answer { which, status, tag } => {
                let requests: Vec<&(&'static str, Vec<u8>)> = sent
                    .iter()
                    .filter(|(_, b)| !b.starts_with(b"SIP/2.0 "))
                    .collect();
                if let Some((to, bytes)) = requests.get(usize::from(which) % requests.len().max(1)) {
                    if let Ok(req) = Message::parse_datagram(bytes, &limits) {
                        let status = 100 + status % 600;
                        let resp = response_for(&req, status, "Fuzz", &format!("t{tag}"), &[]);
                        let to = *to;
                        p.receive(now, &resp, to, to == "tor");
                    }
                }
            }
            Op::Replay { which, peer: n } => {
                if let Some((_, bytes)) = sent.get(usize::from(which) % sent.len().max(1)) {
                    let bytes = bytes.clone();
                    p.receive(now, &bytes, peer(n), false);
                }
            }
            Op::Closed { peer: n } => p.flow_closed(&peer(n)),
            Op::Wait { millis, seconds } => {
                now += Duration::from_millis(u64::from(millis))
                    + Duration::from_secs(u64::from(seconds));
                p.handle_timeout(now);
            }
        }
        while let Some(t) = p.poll_transmit() {
            let mut m = Message::parse_datagram(&t.bytes, &limits).expect("proxy output parses");
            if let Err(e) = m.validate(&limits) {
                panic!("proxy output does not validate: {e}");
            }
            if sent.len() < 256 {
                sent.push((t.to, t.bytes));
            }
        }
        while p.poll_store_event().is_some() {}
    }
});
