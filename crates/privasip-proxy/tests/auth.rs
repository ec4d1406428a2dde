//! Digest authentication in the proxy: challenges, MD5 and SHA-256,
//! replayed and stale nonces, the failure limit, and PrivaSIP tokens as
//! user names and as callee names.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use privasip_digest::{Algorithm, Challenge, Ha1};
use privasip_identity::{Keyring, PrivateKey, RealId, SchemeId};
use privasip_message::{HeaderName, Limits, Message};
use privasip_proxy::{Credentials, Next, Proxy, ProxyConfig, RelayPolicy};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const REALM: &str = "b.example";

fn proxy(t0: Instant, authenticate: bool) -> Proxy<&'static str> {
    let cfg = ProxyConfig {
        authenticate,
        relay: RelayPolicy {
            routed_domains: vec!["c.example".into()],
            ..RelayPolicy::default()
        },
        ..ProxyConfig::new(REALM, "192.0.2.10:5060")
    };
    let mut p = Proxy::new(
        cfg,
        Box::new(|host: &str, _: Option<u16>, _: &str| {
            let peer = match host {
                "bob.host" => "bob",
                "c.example" => "proxy-c",
                _ => return None,
            };
            Some(Next {
                peer,
                reliable: false,
            })
        }),
        [9; 32],
        t0,
    );
    p.set_user(
        REALM,
        "bob",
        Credentials::from_password("bob", REALM, "zanzibar"),
    );
    p
}

fn drain(p: &mut Proxy<&'static str>) -> Vec<(&'static str, Vec<u8>)> {
    std::iter::from_fn(|| p.poll_transmit().map(|t| (t.to, t.bytes))).collect()
}

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse_datagram(b, &Limits::default()).expect("parses")
}

fn register(user: &str, cseq: u32, call_id: &str, auth: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:b.example SIP/2.0\r\nVia: SIP/2.0/UDP bob.host;branch=z9hG4bKr{cseq}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{user}@b.example>\r\nFrom: <sip:{user}@b.example>;tag=t1\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@bob.host>\r\n{auth}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The challenge with this algorithm from a 401/407.
fn nonce_of(resp: &[u8], alg: &str, header: HeaderName) -> (String, bool) {
    let m = parse(resp);
    let c = m
        .auth_values(header)
        .find(|a| a.param("algorithm").as_deref() == Some(alg))
        .expect("challenge for the algorithm");
    (
        c.param("nonce").expect("nonce").into_owned(),
        c.param("stale").is_some_and(|s| s == "true"),
    )
}

// One argument per field of the header it builds.
#[allow(clippy::too_many_arguments)]
fn credentials(
    header: &str,
    username: &str,
    alg: Algorithm,
    password: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    nc: &str,
) -> String {
    let ha1 = Ha1::from_password(alg, "bob", REALM, password);
    let c = Challenge {
        algorithm: alg,
        nonce,
        qop: Some("auth"),
    };
    let response = c.response(&ha1, method, uri, nc, "c0ffee");
    format!(
        "{header}: Digest username=\"{username}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"c0ffee\"\r\n",
        alg.as_str()
    )
}

fn status_of(out: &[(&str, Vec<u8>)]) -> u16 {
    parse(&out.last().expect("an answer").1)
        .status()
        .expect("a response")
}

#[test]
fn register_is_challenged_then_accepted_with_either_algorithm() {
    let t0 = Instant::now();
    let mut p = proxy(t0, false);
    p.receive(t0, &register("bob", 1, "r1", ""), "bob", false);
    let out = drain(&mut p);
    assert_eq!(status_of(&out), 401);
    let text = String::from_utf8_lossy(&out[0].1).into_owned();
    let sha = text.find("algorithm=SHA-256").expect("SHA-256 offered");
    let md5 = text.find("algorithm=MD5").expect("MD5 offered");
    assert!(sha < md5, "SHA-256 first (RFC 8760)");
    for (i, (alg, name)) in [(Algorithm::Sha256, "SHA-256"), (Algorithm::Md5, "MD5")]
        .into_iter()
        .enumerate()
    {
        let (nonce, _) = nonce_of(&out[0].1, name, HeaderName::WwwAuthenticate);
        // Both challenges share a nonce: each use needs a new nc.
        let nc = format!("{:08x}", i + 1);
        let auth = credentials(
            "Authorization",
            "bob",
            alg,
            "zanzibar",
            &nonce,
            "REGISTER",
            "sip:b.example",
            &nc,
        );
        let cseq = 2 + i as u32;
        p.receive(t0, &register("bob", cseq, "r1", &auth), "bob", false);
        assert_eq!(status_of(&drain(&mut p)), 200, "{name}");
    }
}

#[test]
fn wrong_password_replay_stale_and_lockout() {
    let t0 = Instant::now();
    let mut p = proxy(t0, false);
    p.receive(t0, &register("bob", 1, "r1", ""), "bob", false);
    let (nonce, _) = nonce_of(&drain(&mut p)[0].1, "MD5", HeaderName::WwwAuthenticate);
    let good = credentials(
        "Authorization",
        "bob",
        Algorithm::Md5,
        "zanzibar",
        &nonce,
        "REGISTER",
        "sip:b.example",
        "00000001",
    );
    p.receive(t0, &register("bob", 2, "r1", &good), "bob", false);
    assert_eq!(status_of(&drain(&mut p)), 200);
    // The same nc again: a replay.
    p.receive(t0, &register("bob", 3, "r1", &good), "bob", false);
    let out = drain(&mut p);
    assert_eq!(status_of(&out), 403);
    assert!(String::from_utf8_lossy(&out[0].1).contains("Replayed"));
    // Past the nonce's lifetime: a stale challenge.
    let late = t0 + Duration::from_secs(301);
    let next = credentials(
        "Authorization",
        "bob",
        Algorithm::Md5,
        "zanzibar",
        &nonce,
        "REGISTER",
        "sip:b.example",
        "00000002",
    );
    p.receive(late, &register("bob", 4, "r1", &next), "bob", false);
    let out = drain(&mut p);
    assert_eq!(status_of(&out), 401);
    assert!(
        nonce_of(&out[0].1, "MD5", HeaderName::WwwAuthenticate).1,
        "stale=true"
    );
    // Wrong passwords until the limit, then refused outright.
    let mut last = String::new();
    for i in 0..12u32 {
        p.receive(late, &register("bob", 10 + i, "r1", ""), "bob", false);
        let out = drain(&mut p);
        if parse(&out[0].1).status() == Some(403) {
            last = String::from_utf8_lossy(&out[0].1).into_owned();
            break;
        }
        let (n, _) = nonce_of(&out[0].1, "MD5", HeaderName::WwwAuthenticate);
        let bad = credentials(
            "Authorization",
            "bob",
            Algorithm::Md5,
            "guess",
            &n,
            "REGISTER",
            "sip:b.example",
            "00000001",
        );
        p.receive(late, &register("bob", 100 + i, "r1", &bad), "bob", false);
        last = String::from_utf8_lossy(&drain(&mut p).last().expect("answer").1).into_owned();
    }
    assert!(last.contains("403 Too many failed attempts"), "{last}");
    // An unknown user looks like a wrong password.
    let later = late + Duration::from_secs(61);
    let mut q = proxy(later, false);
    q.receive(later, &register("mallory", 1, "r2", ""), "bob", false);
    let out = drain(&mut q);
    assert_eq!(
        status_of(&out),
        200,
        "no credentials configured for mallory: not ours to check"
    );
}

#[test]
fn invites_from_our_users_need_proxy_authorization() {
    let t0 = Instant::now();
    let mut p = proxy(t0, true);
    let invite = |auth: &str| {
        format!(
            "INVITE sip:carol@c.example SIP/2.0\r\nVia: SIP/2.0/UDP bob.host;branch=z9hG4bKi{}\r\n\
             Max-Forwards: 70\r\nTo: <sip:carol@c.example>\r\nFrom: <sip:bob@b.example>;tag=f1\r\n\
             Call-ID: inv-1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@bob.host>\r\n{auth}Content-Length: 0\r\n\r\n",
            auth.len()
        )
        .into_bytes()
    };
    p.receive(t0, &invite(""), "bob", false);
    let out = drain(&mut p);
    assert_eq!(status_of(&out), 407);
    let (nonce, _) = nonce_of(&out[0].1, "SHA-256", HeaderName::ProxyAuthenticate);
    let auth = credentials(
        "Proxy-Authorization",
        "bob",
        Algorithm::Sha256,
        "zanzibar",
        &nonce,
        "INVITE",
        "sip:carol@c.example",
        "00000001",
    );
    // Credentials for another realm pass on; ours end here (§22.3).
    let theirs = "Proxy-Authorization: Digest username=\"bob\", realm=\"c.example\", nonce=\"n\", \
                  uri=\"sip:carol@c.example\", response=\"00\"\r\n";
    p.receive(t0, &invite(&format!("{auth}{theirs}")), "bob", false);
    let out = drain(&mut p);
    let fwd = out
        .iter()
        .find(|(to, _)| *to == "proxy-c")
        .expect("forwarded once authenticated");
    let creds: Vec<String> = parse(&fwd.1)
        .values(HeaderName::ProxyAuthorization)
        .map(str::to_owned)
        .collect();
    assert_eq!(creds.len(), 1, "{creds:?}");
    assert!(creds[0].contains("realm=\"c.example\""), "{creds:?}");
}

#[test]
fn privasip_tokens_register_and_route_to_the_real_user() {
    let t0 = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let key = PrivateKey::generate(SchemeId::Hpke, 0, &mut rng).expect("key");
    let mut enc = key.public().encryptor();
    let mut ring = Keyring::default();
    ring.add_key(key.into_decryptor());
    let mut p = proxy(t0, false);
    p.set_keyring(ring);
    let bob = RealId::new("bob").expect("id");

    // Bob registers under a token (PrivaSIP-1 on REGISTER).
    let token = enc
        .seal(&bob, b"reg-call", &mut rng)
        .expect("seal")
        .to_string();
    p.receive(t0, &register(&token, 1, "reg-call", ""), "bob", false);
    let out = drain(&mut p);
    assert_eq!(status_of(&out), 401);
    let (nonce, _) = nonce_of(&out[0].1, "SHA-256", HeaderName::WwwAuthenticate);
    let auth = credentials(
        "Authorization",
        &token,
        Algorithm::Sha256,
        "zanzibar",
        &nonce,
        "REGISTER",
        "sip:b.example",
        "00000001",
    );
    p.receive(t0, &register(&token, 2, "reg-call", &auth), "bob", false);
    assert_eq!(status_of(&drain(&mut p)), 200, "registered as the real bob");

    // A caller elsewhere sends INVITE to a callee token for bob.
    let callee = enc
        .seal(&bob, b"call-9", &mut rng)
        .expect("seal")
        .to_string();
    let invite = format!(
        "INVITE sip:{callee}@b.example SIP/2.0\r\nVia: SIP/2.0/UDP c.example;branch=z9hG4bKt1\r\n\
         Max-Forwards: 70\r\nTo: <sip:{callee}@b.example>\r\nFrom: <sip:ps1h.x.y@c.example>;tag=f1\r\n\
         Call-ID: call-9\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    p.receive(t0, invite.as_bytes(), "proxy-c", false);
    let out = drain(&mut p);
    let fwd = out
        .iter()
        .find(|(to, _)| *to == "bob")
        .expect("routed to bob's contact");
    let m = parse(&fwd.1);
    // The contact bob registered (its user part is his token, as the
    // PrivaSIP transform makes it).
    assert_eq!(
        m.request_uri(),
        Some(format!("sip:{token}@bob.host").as_str())
    );
    let to_user = m
        .to()
        .and_then(|t| t.uri.as_sip().and_then(|u| u.user).map(str::to_owned));
    assert_eq!(
        to_user.as_deref(),
        Some(callee.as_str()),
        "To stays encrypted"
    );
    // The same token in another dialog opens nothing: 404.
    let moved = invite
        .replace("call-9", "call-10")
        .replace("z9hG4bKt1", "z9hG4bKt2");
    p.receive(t0, moved.as_bytes(), "proxy-c", false);
    assert_eq!(status_of(&drain(&mut p)), 404);
}

/// Bob's REGISTER from `from` with `password`: a challenge, then
/// credentials. Returns the final answer's status (the first one's if it
/// was no challenge).
fn attempt(
    p: &mut Proxy<&'static str>,
    now: Instant,
    from: &'static str,
    cseq: u32,
    password: &str,
) -> u16 {
    p.receive(now, &register("bob", cseq, "g", ""), from, false);
    let out = drain(p);
    if status_of(&out) != 401 {
        return status_of(&out);
    }
    let (nonce, _) = nonce_of(&out[0].1, "MD5", HeaderName::WwwAuthenticate);
    let auth = credentials(
        "Authorization",
        "bob",
        Algorithm::Md5,
        password,
        &nonce,
        "REGISTER",
        "sip:b.example",
        "00000001",
    );
    p.receive(now, &register("bob", cseq + 1, "g", &auth), from, false);
    status_of(&drain(p))
}

/// A wrong password for bob from `from`.
fn guess(p: &mut Proxy<&'static str>, now: Instant, from: &'static str, cseq: u32) -> u16 {
    attempt(p, now, from, cseq, "guess")
}

/// Bob's own password from `from`.
fn bob_logs_in(p: &mut Proxy<&'static str>, now: Instant, from: &'static str, cseq: u32) -> u16 {
    attempt(p, now, from, cseq, "zanzibar")
}

#[test]
fn an_attacker_cannot_lock_the_real_user_out() {
    let t0 = Instant::now();
    let mut p = proxy(t0, false);
    // 60 wrong passwords for bob from one source: it is locked out after
    // MAX_FAILURES...
    let statuses: Vec<u16> = (0..60)
        .map(|i| guess(&mut p, t0, "mallory", 10 * i))
        .collect();
    let limit = privasip_proxy::MAX_FAILURES as usize;
    assert!(statuses[..limit].iter().all(|&s| s == 403));
    assert_eq!(statuses.len(), 60);
    // ...and so is bob from there,
    assert_eq!(bob_logs_in(&mut p, t0, "mallory", 900), 403);
    // but not bob from anywhere else.
    assert_eq!(bob_logs_in(&mut p, t0, "bob", 1000), 200);
}

#[test]
fn guessing_from_many_sources_spares_the_sources_bob_used() {
    let t0 = Instant::now();
    let mut p = proxy(t0, false);
    assert_eq!(bob_logs_in(&mut p, t0, "bob", 1), 200);
    // Guesses spread over many sources, each under its own limit.
    let n = privasip_proxy::MAX_USER_FAILURES;
    for i in 0..n {
        let from: &'static str = Box::leak(format!("bot{i}").into_boxed_str());
        assert_eq!(guess(&mut p, t0, from, 10), 403);
    }
    // Now bob is only let in from where he logged in before.
    assert_eq!(bob_logs_in(&mut p, t0, "newcomer", 10), 403);
    assert_eq!(bob_logs_in(&mut p, t0, "bob", 20), 200);
    // And a minute later, from anywhere again.
    let later = t0 + privasip_proxy::FAILURE_WINDOW;
    assert_eq!(bob_logs_in(&mut p, later, "newcomer", 30), 200);
}

#[test]
fn a_sniffed_nonce_cannot_spoil_the_next_request() {
    let t0 = Instant::now();
    let mut p = proxy(t0, false);
    p.receive(t0, &register("bob", 1, "r1", ""), "bob", false);
    let (nonce, _) = nonce_of(&drain(&mut p)[0].1, "MD5", HeaderName::WwwAuthenticate);
    // Mallory saw the challenge and answers it first, with the highest
    // nc and a response she cannot compute.
    let forged = credentials(
        "Authorization",
        "bob",
        Algorithm::Md5,
        "guess",
        &nonce,
        "REGISTER",
        "sip:b.example",
        "ffffffff",
    );
    p.receive(t0, &register("bob", 2, "r1", &forged), "mallory", false);
    assert_eq!(status_of(&drain(&mut p)), 403);
    let good = credentials(
        "Authorization",
        "bob",
        Algorithm::Md5,
        "zanzibar",
        &nonce,
        "REGISTER",
        "sip:b.example",
        "00000001",
    );
    p.receive(t0, &register("bob", 3, "r1", &good), "bob", false);
    assert_eq!(status_of(&drain(&mut p)), 200, "not taken for a replay");
}

#[test]
fn forged_tokens_cost_at_most_the_budget() {
    let t0 = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let key = PrivateKey::generate(SchemeId::Hpke, 0, &mut rng).expect("key");
    let mut enc = key.public().encryptor();
    let mut ring = Keyring::default();
    ring.add_key(key.into_decryptor());
    let mut p = proxy(t0, false);
    p.set_keyring(ring);
    let bob = RealId::new("bob").expect("id");
    // A well-formed token for our key, sealed for another dialog: each
    // Call-ID below makes it public-key work that fails.
    let token = enc
        .seal(&bob, b"elsewhere", &mut rng)
        .expect("seal")
        .to_string();
    let mut answers = std::collections::BTreeMap::new();
    for i in 0..500u32 {
        let call_id = format!("flood-{i}");
        p.receive(t0, &register(&token, i + 1, &call_id, ""), "mallory", false);
        *answers.entry(status_of(&drain(&mut p))).or_insert(0) += 1;
    }
    let budget = u64::from(privasip_proxy::OPENS_BURST);
    assert_eq!(p.token_open_attempts(), budget);
    assert_eq!(answers.get(&404), Some(&(budget as i32)));
    assert_eq!(answers.get(&503), Some(&(500 - budget as i32)));
    // The same failed token and Call-ID again, later: remembered, no work.
    let later = t0 + Duration::from_secs(10);
    p.receive(
        later,
        &register(&token, 9999, "flood-0", ""),
        "mallory",
        false,
    );
    assert_eq!(status_of(&drain(&mut p)), 404);
    assert_eq!(p.token_open_attempts(), budget);
    // Meanwhile bob, from his own address, registers under a token.
    let real = enc
        .seal(&bob, b"bob-reg", &mut rng)
        .expect("seal")
        .to_string();
    p.receive(t0, &register(&real, 701, "bob-reg", ""), "bob", false);
    let out = drain(&mut p);
    assert_eq!(status_of(&out), 401, "bob is known: Digest first");
    let (nonce, _) = nonce_of(&out[0].1, "SHA-256", HeaderName::WwwAuthenticate);
    let auth = credentials(
        "Authorization",
        &real,
        Algorithm::Sha256,
        "zanzibar",
        &nonce,
        "REGISTER",
        "sip:b.example",
        "00000001",
    );
    p.receive(t0, &register(&real, 702, "bob-reg", &auth), "bob", false);
    assert_eq!(status_of(&drain(&mut p)), 200);
}

#[test]
fn one_calls_only_as_oneself() {
    let t0 = Instant::now();
    let mut p = proxy(t0, true);
    p.set_user(
        REALM,
        "alice",
        Credentials::from_password("alice", REALM, "wonderland"),
    );
    // Bob's credentials, Alice's name in From.
    let invite = |auth: &str, branch: &str| {
        format!(
            "INVITE sip:carol@c.example SIP/2.0\r\nVia: SIP/2.0/UDP bob.host;branch={branch}\r\n\
             Max-Forwards: 70\r\nTo: <sip:carol@c.example>\r\nFrom: <sip:alice@b.example>;tag=f1\r\n\
             Call-ID: spoof-1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@bob.host>\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    p.receive(t0, &invite("", "z9hG4bKsp1"), "bob", false);
    let out = drain(&mut p);
    let (nonce, _) = nonce_of(&out[0].1, "SHA-256", HeaderName::ProxyAuthenticate);
    let auth = credentials(
        "Proxy-Authorization",
        "bob",
        Algorithm::Sha256,
        "zanzibar",
        &nonce,
        "INVITE",
        "sip:carol@c.example",
        "00000001",
    );
    p.receive(t0, &invite(&auth, "z9hG4bKsp2"), "bob", false);
    let out = drain(&mut p);
    assert_eq!(status_of(&out), 403);
    assert!(out.iter().all(|(to, _)| *to == "bob"), "nothing forwarded");
}

/// A callee token this proxy cannot open because it lacks the key (none
/// at all, or not this one) is answered 404 with a reason that points at
/// the key, and the operator is told which key, at most once a second,
/// never whose token it was.
#[test]
fn tokens_for_keys_we_lack_tell_the_operator_which_key() {
    let t0 = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let theirs = PrivateKey::generate(SchemeId::Hpke, 0, &mut rng).expect("key");
    let bob = RealId::new("bob").expect("id");
    let invite = |n: u32,
                  enc: &mut Box<dyn privasip_identity::Encryptor>,
                  rng: &mut ChaCha20Rng| {
        let call = format!("nokey-{n}");
        let callee = enc
            .seal(&bob, call.as_bytes(), rng)
            .expect("seal")
            .to_string();
        format!(
            "INVITE sip:{callee}@b.example SIP/2.0\r\nVia: SIP/2.0/UDP c.example;branch=z9hG4bKnk{n}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{callee}@b.example>\r\nFrom: <sip:ps1h.x.y@c.example>;tag=f1\r\n\
             Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let mut enc = theirs.public().encryptor();

    // No keys at all.
    let mut p = proxy(t0, false);
    p.receive(
        t0,
        invite(1, &mut enc, &mut rng).as_bytes(),
        "proxy-c",
        false,
    );
    let out = drain(&mut p);
    assert_eq!(status_of(&out), 404);
    assert!(String::from_utf8_lossy(&out[0].1).contains("no key for this token"));
    assert_eq!(p.poll_notice(), Some(privasip_proxy::Notice::NoKeys));

    // A key, not this one: the notice names the token's key id.
    let mut ring = Keyring::default();
    ring.add_key(
        PrivateKey::generate(SchemeId::Hpke, 0, &mut rng)
            .expect("key")
            .into_decryptor(),
    );
    p.set_keyring(ring);
    let later = t0 + std::time::Duration::from_secs(2);
    p.receive(
        later,
        invite(2, &mut enc, &mut rng).as_bytes(),
        "proxy-c",
        false,
    );
    assert_eq!(status_of(&drain(&mut p)), 404);
    let notice = p.poll_notice().expect("a notice");
    let text = notice.to_string();
    assert!(
        text.contains("hpke") && text.contains("[privasip] keys"),
        "{text}"
    );
    assert!(!text.contains("bob"), "{text}");
    // A flood of such tokens makes one line a second, not one each.
    for n in 3..50 {
        p.receive(
            later,
            invite(n, &mut enc, &mut rng).as_bytes(),
            "proxy-c",
            false,
        );
    }
    drain(&mut p);
    assert_eq!(p.poll_notice(), None);
}
