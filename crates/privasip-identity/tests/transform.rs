//! PrivaSIP-1 and -2 end to end on real SIP messages: the caller's user
//! agent protects, the home proxy authenticates with Digest over the real
//! user, the callee's proxy routes, and no real ID or display name is left
//! in anything that crosses the wire.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Instant;

use common::{private_key, rng};
use privasip_digest::{Algorithm, Challenge, Ha1};
use privasip_identity::transform::{
    DialogTokens, TransformError, callee_token, caller_token, context, private_call_id,
    protect_request,
};
use privasip_identity::{AesSender, Encryptor, Keyring, PrivateKey, RealId, SchemeId};
use privasip_message::{HeaderName, Limits, Message};

const REAL_IDS: [&str; 4] = ["alice", "Alice Liddell", "bob", "Bob Builder"];

fn invite(call_id: &str) -> String {
    format!(
        "INVITE sip:bob@b.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnashds8\r\n\
         Max-Forwards: 70\r\n\
         To: \"Bob Builder\" <sip:bob@b.example>\r\n\
         From: \"Alice Liddell\" <sip:alice@a.example>;tag=1928301774\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: \"Alice Liddell\" <sip:alice@10.0.0.5:5060>\r\n\
         User-Agent: AliceSoft/1.0 (alice's laptop)\r\n\
         Organization: Alice Inc\r\n\
         Subject: call from alice\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn assert_no_real_ids(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    for id in REAL_IDS {
        assert!(
            !text.contains(&id.to_ascii_lowercase()),
            "{id:?} leaked in:\n{text}"
        );
    }
}

#[test]
fn privasip_2_hides_both_ids_and_each_proxy_learns_only_its_own() {
    for (scheme, bits) in [
        (SchemeId::Hpke, 0),
        (SchemeId::Ecies, 0),
        (SchemeId::Rsa, 2048),
    ] {
        let mut r = rng(20);
        let now = Instant::now();
        // Proxy A (alice's home) and proxy B (bob's) each have a key.
        let key_a = private_key(scheme, bits);
        // (Not the shared test key: A's may be that one.)
        let key_b = PrivateKey::generate(SchemeId::Hpke, 0, &mut rng(99)).expect("keygen");
        let (mut to_a, mut to_b) = (key_a.public().encryptor(), key_b.public().encryptor());
        let mut proxy_a = Keyring::default();
        proxy_a.add_key(key_a.into_decryptor());
        let mut proxy_b = Keyring::default();
        proxy_b.add_key(key_b.into_decryptor());

        // Alice's user agent.
        let call_id = private_call_id(&mut r);
        let tokens = DialogTokens {
            caller: to_a
                .seal(
                    &RealId::new("alice").expect("id"),
                    call_id.as_bytes(),
                    &mut r,
                )
                .expect("seal")
                .to_string(),
            callee: Some(
                to_b.seal(&RealId::new("bob").expect("id"), call_id.as_bytes(), &mut r)
                    .expect("seal")
                    .to_string(),
            ),
        };
        let raw = invite(&call_id);
        let mut msg = Message::parse_datagram(raw.as_bytes(), &Limits::default()).expect("parse");
        protect_request(&mut msg, &tokens).expect("protect");
        let wire = msg.to_bytes();
        assert_no_real_ids(&wire);
        let m = Message::parse_datagram(&wire, &Limits::default()).expect("still valid SIP");
        for h in [
            HeaderName::UserAgent,
            HeaderName::Organization,
            HeaderName::Subject,
        ] {
            assert!(m.header(h).is_none(), "{h:?} kept");
        }
        assert_eq!(m.from().expect("from").tag(), Some("1928301774"));
        assert!(m.from().expect("from").display_name.is_none());

        // Proxy A learns the caller, and cannot read the callee.
        let ctx = context(&m).expect("call-id");
        let caller = caller_token(&m).expect("caller token");
        assert_eq!(
            proxy_a
                .open(&caller, ctx, now)
                .expect("A opens")
                .id
                .expose(),
            "alice"
        );
        let callee = callee_token(&m).expect("callee token");
        assert!(
            proxy_a.open(&callee, ctx, now).is_err(),
            "A must not read the callee"
        );

        // Proxy B learns the callee, and cannot read the caller.
        assert_eq!(
            proxy_b
                .open(&callee, ctx, now)
                .expect("B opens")
                .id
                .expose(),
            "bob"
        );
        assert!(
            proxy_b.open(&caller, ctx, now).is_err(),
            "B must not read the caller"
        );
        // To stays encrypted all the way to bob.
        let to = m.to().expect("to");
        assert_eq!(to.uri.as_sip().and_then(|u| u.user), Some(callee.as_str()));
    }
}

#[test]
fn privasip_1_with_aes_and_digest_over_the_real_user() {
    let mut r = rng(21);
    let now = Instant::now();
    let realm = "a.example";
    // The home proxy stores only HA1s; the SHA-256 one seeds AES.
    let ha1_md5 = Ha1::from_password(Algorithm::Md5, "alice", realm, "wonderland");
    let ha1_sha = Ha1::from_password(Algorithm::Sha256, "alice", realm, "wonderland");
    let mut proxy_a = Keyring::default();
    proxy_a.aes_mut().add_user(
        RealId::new("alice").expect("id"),
        ha1_sha.expose_hex().as_bytes(),
        0,
    );

    // Alice knows her password, so she derives the same secret.
    let mut sender = AesSender::new(
        Ha1::from_password(Algorithm::Sha256, "alice", realm, "wonderland")
            .expose_hex()
            .as_bytes(),
        0,
    );
    let call_id = private_call_id(&mut r);
    let token = sender
        .seal(
            &RealId::new("alice").expect("id"),
            call_id.as_bytes(),
            &mut r,
        )
        .expect("seal")
        .to_string();
    let mut msg_text = invite(&call_id);
    // PrivaSIP-1: the callee stays in clear.
    msg_text = msg_text
        .replace("sip:bob@", "sip:carol@")
        .replace("Bob Builder", "Carol");
    let mut msg = Message::parse_datagram(msg_text.as_bytes(), &Limits::default()).expect("parse");
    protect_request(
        &mut msg,
        &DialogTokens {
            caller: token.clone(),
            callee: None,
        },
    )
    .expect("protect");
    let wire = msg.to_bytes();
    assert_no_real_ids(&wire);

    // The proxy challenges; alice answers with username = token and a
    // response over her real HA1 (privasip-digest's definition).
    for (alg, ha1) in [(Algorithm::Md5, &ha1_md5), (Algorithm::Sha256, &ha1_sha)] {
        let c = Challenge {
            algorithm: alg,
            nonce: "n0nce",
            qop: Some("auth"),
        };
        let alice_ha1 = Ha1::from_password(alg, "alice", realm, "wonderland");
        let response = c.response(
            &alice_ha1,
            "INVITE",
            "sip:carol@b.example",
            "00000001",
            "cn",
        );
        // Proxy side: open the token from the Authorization username, find
        // that user's stored HA1, check.
        let m = Message::parse_datagram(&wire, &Limits::default()).expect("parse");
        let opened = proxy_a
            .open(&token, context(&m).expect("ctx"), now)
            .expect("opens");
        assert_eq!(opened.id.expose(), "alice");
        assert_eq!(caller_token(&m).as_deref(), Some(token.as_str()));
        assert!(c.verify(
            ha1,
            "INVITE",
            "sip:carol@b.example",
            "00000001",
            "cn",
            &response
        ));
        let wrong = Ha1::from_password(alg, "alice", realm, "guess");
        let bad = c.response(&wrong, "INVITE", "sip:carol@b.example", "00000001", "cn");
        assert!(!c.verify(ha1, "INVITE", "sip:carol@b.example", "00000001", "cn", &bad));
    }
}

#[test]
fn register_carries_the_token_as_its_address_of_record() {
    let mut r = rng(22);
    let key = private_key(SchemeId::Hpke, 0);
    let call_id = private_call_id(&mut r);
    let token = key
        .public()
        .encryptor()
        .seal(&RealId::new("bob").expect("id"), call_id.as_bytes(), &mut r)
        .expect("seal")
        .to_string();
    let text = format!(
        "REGISTER sip:b.example SIP/2.0\r\n\
         Via: SIP/2.0/TCP 10.0.0.9;branch=z9hG4bKreg1\r\n\
         Max-Forwards: 70\r\nTo: Bob Builder <sip:bob@b.example>\r\n\
         From: Bob Builder <sip:bob@b.example>;tag=456248\r\n\
         Call-ID: {call_id}\r\nCSeq: 1826 REGISTER\r\n\
         Contact: <sip:bob@10.0.0.9>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
    );
    let mut m = Message::parse_datagram(text.as_bytes(), &Limits::default()).expect("parse");
    protect_request(
        &mut m,
        &DialogTokens {
            caller: token.clone(),
            callee: None,
        },
    )
    .expect("protect");
    let wire = m.to_bytes();
    assert_no_real_ids(&wire);
    let m = Message::parse_datagram(&wire, &Limits::default()).expect("parse");
    let to_user = m
        .to()
        .and_then(|t| t.uri.as_sip().and_then(|u| u.user).map(str::to_owned));
    assert_eq!(to_user.as_deref(), Some(token.as_str()));
    assert_eq!(m.request_uri(), Some("sip:b.example"));
}

#[test]
fn transform_refuses_what_would_leak_or_cannot_be_bound() {
    let tokens = DialogTokens {
        caller: "ps1h.AAAAAAAA.AAAA".into(),
        callee: None,
    };
    let raw = invite("a84b4c76e66710@pc33.atlanta.example.com");
    let mut m = Message::parse_datagram(raw.as_bytes(), &Limits::default()).expect("parse");
    assert_eq!(
        protect_request(&mut m, &tokens),
        Err(TransformError::CallIdHasHost)
    );
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
                To: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let mut m = Message::parse_datagram(resp.as_bytes(), &Limits::default()).expect("parse");
    assert_eq!(
        protect_request(&mut m, &tokens),
        Err(TransformError::NotARequest)
    );
    let tel = "INVITE tel:+15551234 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
               From: <sip:a@h>;tag=1\r\nTo: <tel:+15551234>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
               Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let mut m = Message::parse_datagram(tel.as_bytes(), &Limits::default()).expect("parse");
    let t2 = DialogTokens {
        callee: Some("ps1h.AAAAAAAA.AAAA".into()),
        ..tokens
    };
    assert!(protect_request(&mut m, &t2).is_err());
}

/// The identifying strings of a request: From, To and Request-URI user
/// parts, display names, and the SDP origin's username.
fn identities(m: &Message<'_>) -> Vec<String> {
    let mut ids = Vec::new();
    let user_of =
        |uri: &privasip_message::Uri<'_>| uri.as_sip().and_then(|u| u.user).map(str::to_owned);
    for na in [m.from(), m.to()].into_iter().flatten() {
        ids.extend(user_of(&na.uri));
        ids.extend(na.display_name.map(|d| d.trim_matches('"').to_owned()));
    }
    if let Some(privasip_message::ContactValue::Addrs(contacts)) = m.contacts() {
        for c in &contacts {
            ids.extend(c.display_name.map(|d| d.trim_matches('"').to_owned()));
        }
    }
    ids.extend(m.request_uri_parsed().as_ref().and_then(user_of));
    let body = String::from_utf8_lossy(m.body()).into_owned();
    for line in body.lines() {
        if let Some(o) = line.strip_prefix("o=") {
            ids.extend(o.split(' ').next().map(str::to_owned));
        }
    }
    ids.retain(|s| s.len() > 2 && s != "-");
    ids
}

#[test]
fn privasip_2_on_the_rfc4475_invites_leaves_no_id_or_display_name() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rfc4475");
    let mut r = rng(23);
    let key_a = private_key(SchemeId::Hpke, 0);
    let mut to_a = key_a.public().encryptor();
    let mut to_b = private_key(SchemeId::Ecies, 0).public().encryptor();
    for file in ["wsinv.dat", "esc01.dat", "longreq.dat"] {
        let raw = std::fs::read(dir.join(file)).expect("read");
        let original = Message::parse_datagram(&raw, &Limits::default()).expect("valid");
        let secrets = identities(&original);
        assert!(secrets.len() >= 3, "{file}: found only {secrets:?}");

        let mut m = original.clone();
        // The user agent's Call-ID carries no host.
        let call_id = private_call_id(&mut r);
        m.set_header(HeaderName::CallId, call_id.clone())
            .expect("call-id");
        let ctx = call_id.as_bytes();
        let tokens = DialogTokens {
            caller: to_a
                .seal(&RealId::new("caller").expect("id"), ctx, &mut r)
                .expect("seal")
                .to_string(),
            callee: Some(
                to_b.seal(&RealId::new("callee").expect("id"), ctx, &mut r)
                    .expect("seal")
                    .to_string(),
            ),
        };
        protect_request(&mut m, &tokens).unwrap_or_else(|e| panic!("{file}: {e}"));
        let wire = m.to_bytes();
        let text = String::from_utf8_lossy(&wire);
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{file}: {s:?} survived PrivaSIP-2:\n{text}"
            );
        }
        // Still a valid message that a proxy routes the same way.
        let back = Message::parse_datagram(&wire, &Limits::default()).expect("re-parses");
        assert_eq!(back.cseq(), original.cseq(), "{file}");
        assert_eq!(back.vias().len(), original.vias().len(), "{file}");
        assert_eq!(caller_token(&back).as_deref(), Some(tokens.caller.as_str()));
        assert_eq!(callee_token(&back), tokens.callee);
    }
}

#[test]
fn sdp_loses_its_identifying_lines_only() {
    let sdp = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 10.0.0.5\r\ns=Call with Alice\r\n\
i=alice's phone\r\ne=alice@a.example\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n";
    let clean = privasip_identity::transform::anonymous_sdp(sdp).expect("changed");
    assert_eq!(
        String::from_utf8(clean).expect("utf8"),
        "v=0\r\no=- 2890844526 2890844526 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n"
    );
    let already = b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\n";
    assert_eq!(privasip_identity::transform::anonymous_sdp(already), None);
}
