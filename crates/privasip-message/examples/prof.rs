#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]
use privasip_message::{Limits, Message};
fn main() {
    let bytes =
        std::fs::read(std::env::var("MSG").unwrap_or_else(|_| "testdata/bench/invite.sip".into()))
            .unwrap();
    let mut n = 0usize;
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let read = std::env::var_os("PARSE_ONLY").is_none();
    for _ in 0..iters {
        let m = Message::parse_datagram(std::hint::black_box(&bytes), &Limits::default()).unwrap();
        if !read {
            n += m.headers().len();
            continue;
        }
        let via = m.top_via().unwrap();
        n += via.branch().map_or(0, str::len)
            + m.from().unwrap().tag().map_or(0, str::len)
            + m.to().unwrap().uri_raw.len()
            + m.cseq().unwrap().seq as usize
            + m.call_id().unwrap().len();
    }
    println!("{n}");
}
