//! The home proxy's accounting on virtual time: a call it bills is
//! answered only once the record of its start is committed, and its BYE
//! only once the record of its end is; a store that never commits delays
//! the call by at most 5 s, never fails it.

mod common;

use std::time::{Duration, Instant};

use common::Net;
use privasip_proxy::StoreEvent;
use privasip_ua::{Privacy, UaEvent};

/// Alice (at pa) and Bob (at pb), registered, plain SIP; pa holds what it
/// accounts until its store commits, and everything so far is committed.
fn network() -> Net {
    #[allow(clippy::disallowed_methods)] // some starting instant
    let mut net = Net::new(Instant::now());
    let pa = common::proxy(net.now, "pa", "a.example", Vec::new(), false);
    let pb = common::proxy(net.now, "pb", "b.example", Vec::new(), false);
    net.proxies.insert("pa", pa);
    net.proxies.insert("pb", pb);
    common::alice_and_bob(&mut net, Privacy::Plain, Privacy::Plain);
    net.proxies
        .get_mut("pa")
        .expect("pa")
        .set_store_commits(true);
    commit_all(&mut net);
    net
}

/// pa's store commits every event pa handed it.
fn commit_all(net: &mut Net) {
    let handed = net.stored.iter().filter(|(p, _)| *p == "pa").count() as u64;
    let now = net.now;
    net.proxies
        .get_mut("pa")
        .expect("pa")
        .store_committed(now, handed);
}

fn accounted(net: &Net) -> (usize, usize) {
    let of = |started: bool| {
        net.stored
            .iter()
            .filter(|(p, e)| {
                *p == "pa"
                    && match e {
                        StoreEvent::CallStarted { .. } => started,
                        StoreEvent::CallEnded { .. } => !started,
                        _ => false,
                    }
            })
            .count()
    };
    (of(true), of(false))
}

#[test]
fn an_accounted_call_is_answered_once_its_record_is_committed() {
    let mut net = network();
    let mut rng = net.rng.clone();
    let now = net.now;
    let call = net
        .ua("alice")
        .call(now, "sip:bob@b.example", &mut rng)
        .expect("call");
    net.run(Duration::from_secs(2));
    assert_eq!(accounted(&net), (1, 0), "Bob answered: pa accounts it");
    assert!(
        !net.saw("alice", |e| *e == UaEvent::Answered { call }),
        "the 200 waits for the record: {:?}",
        net.events
    );
    commit_all(&mut net);
    net.run(Duration::from_secs(2));
    assert!(
        net.saw("alice", |e| *e == UaEvent::Answered { call }),
        "{:?}",
        net.events
    );

    // Alice hangs up: her BYE's 200 waits for the record of the end.
    let now = net.now;
    net.ua("alice").hangup(now, call, &mut rng).expect("hangup");
    net.run(Duration::from_secs(2));
    assert_eq!(accounted(&net), (1, 1));
    assert!(!net.saw("alice", |e| *e == UaEvent::Ended { call }));
    commit_all(&mut net);
    net.run(Duration::from_secs(2));
    assert!(net.saw("alice", |e| *e == UaEvent::Ended { call }));
}

#[test]
fn a_store_that_never_commits_delays_the_call_but_does_not_fail_it() {
    let mut net = network();
    let mut rng = net.rng.clone();
    let start = net.now;
    let call = net
        .ua("alice")
        .call(start, "sip:bob@b.example", &mut rng)
        .expect("call");
    net.run(Duration::from_secs(4));
    assert!(!net.saw("alice", |e| *e == UaEvent::Answered { call }));
    // (The virtual clock stands still until a timer is due: 6 s from
    // where it stands reaches the 5 s of patience.)
    net.run(Duration::from_secs(6));
    assert!(net.now - start >= Duration::from_secs(5));
    assert!(
        net.saw("alice", |e| *e == UaEvent::Answered { call }),
        "after 5 s the 2xx goes up anyway: {:?}",
        net.events
    );
    assert!(
        !net.saw("alice", |e| matches!(e, UaEvent::Failed { .. })),
        "{:?}",
        net.events
    );
    // Bob retransmitted his 200 meanwhile; Alice saw one answer.
    let answered = net
        .events
        .iter()
        .filter(|(who, e)| *who == "alice" && *e == UaEvent::Answered { call })
        .count();
    assert_eq!(answered, 1);
}
