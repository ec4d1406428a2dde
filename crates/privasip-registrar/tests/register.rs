//! RFC 3261 §10.3 on virtual time.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use privasip_message::{HasSipStatus, Limits, Message};
use privasip_registrar::{RegisterError, Registrar, RegistrarConfig};

const AOR: &str = "sip:bob@b.example";

fn register(call_id: &str, cseq: u32, contacts: &[&str], expires: Option<u32>) -> Vec<u8> {
    let mut m = format!(
        "REGISTER sip:b.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK{cseq}\r\nMax-Forwards: 70\r\n\
         To: <sip:bob@b.example>\r\nFrom: <sip:bob@b.example>;tag=1\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
    );
    for c in contacts {
        m.push_str(&format!("Contact: {c}\r\n"));
    }
    if let Some(e) = expires {
        m.push_str(&format!("Expires: {e}\r\n"));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}

fn apply(
    reg: &mut Registrar,
    bytes: &[u8],
    now: Instant,
) -> Result<Vec<privasip_registrar::Binding>, RegisterError> {
    let m = Message::parse_datagram(bytes, &Limits::default()).expect("test REGISTER parses");
    reg.register(AOR, &m, now)
}

fn contacts(reg: &mut Registrar, now: Instant) -> Vec<String> {
    reg.lookup(AOR, now)
        .into_iter()
        .map(|b| b.contact.into_inner())
        .collect()
}

#[test]
fn add_refresh_expire() {
    let mut reg = Registrar::new(RegistrarConfig::default());
    let t0 = Instant::now();
    let b = apply(
        &mut reg,
        &register("c1", 1, &["<sip:bob@192.0.2.9>"], Some(120)),
        t0,
    )
    .expect("bound");
    assert_eq!(b[0].remaining(t0), 120);
    // Refresh at 100 s for another 120 s.
    let t1 = t0 + Duration::from_secs(100);
    apply(
        &mut reg,
        &register("c1", 2, &["<sip:bob@192.0.2.9>"], Some(120)),
        t1,
    )
    .expect("refresh");
    assert_eq!(contacts(&mut reg, t0 + Duration::from_secs(200)).len(), 1);
    assert!(contacts(&mut reg, t0 + Duration::from_secs(221)).is_empty());
    assert!(reg.is_empty());
}

#[test]
fn several_contacts_ordered_by_q_with_their_own_expiry() {
    let mut reg = Registrar::new(RegistrarConfig::default());
    let t0 = Instant::now();
    apply(
        &mut reg,
        &register(
            "c1",
            1,
            &[
                "<sip:bob@desk.example>;q=0.5",
                "<sip:bob@phone.example>;q=1.0;expires=300",
                "<sip:bob@old.example>;q=0.1",
            ],
            Some(3600),
        ),
        t0,
    )
    .expect("bound");
    assert_eq!(
        contacts(&mut reg, t0),
        [
            "sip:bob@phone.example",
            "sip:bob@desk.example",
            "sip:bob@old.example"
        ]
    );
    assert_eq!(
        contacts(&mut reg, t0 + Duration::from_secs(301)),
        ["sip:bob@desk.example", "sip:bob@old.example"]
    );
    // Expiry beyond the maximum is cut to it.
    let b = reg.lookup(AOR, t0);
    assert!(b.iter().all(|b| b.remaining(t0) <= 3600));
}

#[test]
fn remove_one_and_remove_all() {
    let mut reg = Registrar::new(RegistrarConfig::default());
    let t0 = Instant::now();
    apply(
        &mut reg,
        &register(
            "c1",
            1,
            &["<sip:bob@a.example>", "<sip:bob@b2.example>"],
            None,
        ),
        t0,
    )
    .expect("bound");
    apply(
        &mut reg,
        &register("c1", 2, &["<sip:bob@a.example>;expires=0"], None),
        t0,
    )
    .expect("removed one");
    assert_eq!(contacts(&mut reg, t0), ["sip:bob@b2.example"]);
    // "*" needs Expires: 0 ...
    assert_eq!(
        apply(&mut reg, &register("c1", 3, &["*"], Some(60)), t0),
        Err(RegisterError::BadRequest(
            "Contact: * needs Expires: 0 and no other Contact"
        ))
    );
    // ... then removes everything.
    assert_eq!(
        apply(&mut reg, &register("c1", 4, &["*"], Some(0)), t0),
        Ok(vec![])
    );
    assert!(reg.is_empty());
}

#[test]
fn too_brief_is_423_and_changes_nothing() {
    let mut reg = Registrar::new(RegistrarConfig::default());
    let t0 = Instant::now();
    let e = apply(
        &mut reg,
        &register("c1", 1, &["<sip:bob@a.example>"], Some(30)),
        t0,
    )
    .expect_err("too brief");
    assert_eq!(e, RegisterError::IntervalTooBrief { min_expires: 60 });
    assert_eq!(e.sip_status(), 423);
    assert!(reg.is_empty());
}

#[test]
fn out_of_order_is_500_and_a_query_lists() {
    let mut reg = Registrar::new(RegistrarConfig::default());
    let t0 = Instant::now();
    apply(
        &mut reg,
        &register("c1", 5, &["<sip:bob@a.example>"], None),
        t0,
    )
    .expect("bound");
    let e = apply(
        &mut reg,
        &register("c1", 5, &["<sip:bob@a.example>"], None),
        t0,
    )
    .expect_err("same CSeq");
    assert_eq!(e.sip_status(), 500);
    // Another Call-ID (another device) may use any CSeq.
    apply(
        &mut reg,
        &register("c2", 1, &["<sip:bob@a.example>"], None),
        t0,
    )
    .expect("other");
    // No Contact: a query.
    assert_eq!(
        apply(&mut reg, &register("c3", 1, &[], None), t0)
            .expect("query")
            .len(),
        1
    );
}

#[test]
fn bad_values_are_400() {
    let mut reg = Registrar::new(RegistrarConfig::default());
    let t0 = Instant::now();
    for c in [
        "<sip:bob@a.example>;q=2",
        "<sip:bob@a.example>;q",
        "<sip:bob@a.example>;expires=soon",
    ] {
        let e = apply(&mut reg, &register("c1", 1, &[c], None), t0).expect_err(c);
        assert_eq!(e.sip_status(), 400, "{c}");
    }
    let many: Vec<String> = (0..11).map(|i| format!("<sip:bob@h{i}.example>")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        apply(&mut reg, &register("c1", 1, &many, None), t0),
        Err(RegisterError::TooManyContacts)
    );
}

#[test]
fn expire_sweeps_and_debug_redacts() {
    let mut reg = Registrar::new(RegistrarConfig::default());
    let t0 = Instant::now();
    apply(
        &mut reg,
        &register("c1", 1, &["<sip:bob@a.example>"], Some(60)),
        t0,
    )
    .expect("bound");
    let shown = format!("{:?}", reg.lookup(AOR, t0));
    assert!(!shown.contains("bob"), "{shown}");
    assert_eq!(reg.expire(t0 + Duration::from_secs(61)), 1);
    assert!(reg.is_empty());
}

#[test]
fn the_number_of_addresses_of_record_is_bounded() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig {
        max_aors: 3,
        ..RegistrarConfig::default()
    });
    let req = |user: &str, expires: u32| {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK{user}\r\n\
             To: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=1\r\n\
             Call-ID: {user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@h>;expires={expires}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    for (i, user) in ["a", "b", "c"].into_iter().enumerate() {
        let text = req(user, 60 + 60 * i as u32);
        let m = Message::parse_datagram(text.as_bytes(), &Limits::default()).expect("parses");
        r.register(&format!("sip:{user}@example.com"), &m, t0)
            .expect("room");
    }
    let text = req("d", 60);
    let m = Message::parse_datagram(text.as_bytes(), &Limits::default()).expect("parses");
    assert_eq!(
        r.register("sip:d@example.com", &m, t0),
        Err(RegisterError::Full)
    );
    assert_eq!(RegisterError::Full.sip_status(), 503);
    // Once one lapses there is room again.
    let later = t0 + Duration::from_secs(61);
    assert!(r.register("sip:d@example.com", &m, later).is_ok());
    assert_eq!(r.len(), 3);
}

/// What a REGISTER changes, as a shared store needs it: the contacts it
/// names and the stored form of those they match; all for `*`; none for a
/// query.
#[test]
fn a_register_says_which_contacts_it_touches() {
    let mut reg = Registrar::new(RegistrarConfig::default());
    let now = Instant::now();
    apply(
        &mut reg,
        &register("c1", 1, &["<sip:bob@Host.Example>"], None),
        now,
    )
    .expect("first");
    apply(
        &mut reg,
        &register("c1", 2, &["<sip:bob@192.0.2.2>"], None),
        now,
    )
    .expect("second");
    let mut touched = |bytes: &[u8]| {
        let m = Message::parse_datagram(bytes, &Limits::default()).expect("parses");
        reg.register_changes(AOR, &m, now)
            .expect("applies")
            .touched
            .map(privasip_message::Sensitive::into_inner)
    };
    // Same contact with the host in other case: both spellings.
    assert_eq!(
        touched(&register("c1", 3, &["<sip:bob@host.example>"], Some(0))),
        Some(vec![
            "sip:bob@host.example".to_owned(),
            "sip:bob@Host.Example".to_owned()
        ])
    );
    assert_eq!(
        touched(&register("c1", 4, &["<sip:bob@192.0.2.3>"], None)),
        Some(vec!["sip:bob@192.0.2.3".to_owned()])
    );
    assert_eq!(touched(&register("c1", 5, &[], None)), Some(vec![]));
    assert_eq!(touched(&register("c1", 6, &["*"], Some(0))), None);
}
