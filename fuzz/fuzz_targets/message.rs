//! Any bytes as one UDP datagram: never a panic; whatever parses prints,
//! and what prints parses again to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privasip_message::{HeaderName, Limits, Message};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(mut m) = Message::parse_datagram(data, &limits) else {
        return;
    };
    // Every typed accessor must answer without panicking, before
    // validation (a proxy reads what it routes on) and after.
    let _ = (m.method(), m.status(), m.request_uri_parsed(), m.top_via());
    let _ = (m.vias(), m.from(), m.to(), m.call_id(), m.cseq(), m.contacts());
    let _ = (m.routes(), m.record_routes(), m.content_type(), m.expires());
    let _ = m.auth_values(HeaderName::Authorization).count();
    let _ = m.check_mandatory_headers();
    if m.validate(&limits).is_ok() {
        let _ = (m.top_via(), m.from(), m.to(), m.call_id(), m.cseq());
    }

    let printed = m.to_bytes();
    let again = Message::parse_datagram(&printed, &limits).expect("printed message parses");
    assert_eq!(printed, again.to_bytes(), "print is a fixed point");

    // The edits PrivaSIP makes keep the message valid.
    if m.remove_display_names(HeaderName::From).is_ok() && m.set_user(HeaderName::From, "x").is_ok() {
        let edited = m.to_bytes();
        Message::parse_datagram(&edited, &limits).expect("edited message parses");
    }
});
