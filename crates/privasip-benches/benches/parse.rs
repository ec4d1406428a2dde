//! Parse throughput: privasip-message against rsip, rsipstack's parser and
//! ezk-sip-types, in one run, on the same messages.
//!
//! Each parser parses a whole message and reads what a proxy routes on
//! (method or status, top Via branch, Call-ID, CSeq, From tag, To user,
//! Content-Length, body). Like the others, privasip-message frames the
//! message and checks a header when it is read; `privasip+validate` also
//! checks every known header against its grammar, which is what the
//! privasip proxy and user agent do with each message they receive.
//!
//! `PER_MSG=1` adds one group per torture message that every parser
//! accepts, privasip against rsipstack, to see where the time goes.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn load(dir: &str, files: &[&str]) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(dir);
    files
        .iter()
        .map(|f| (f.to_string(), std::fs::read(root.join(f)).unwrap()))
        .collect()
}

fn realistic() -> Vec<(String, Vec<u8>)> {
    load(
        "bench",
        &[
            "invite.sip",
            "ringing.sip",
            "ok.sip",
            "register.sip",
            "bye.sip",
        ],
    )
}

fn rfc4475_valid() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rfc4475");
    let manifest = std::fs::read_to_string(root.join("MANIFEST.tsv")).unwrap();
    let files: Vec<&str> = manifest
        .lines()
        .filter(|l| l.split('\t').nth(2) == Some("valid"))
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    load("rfc4475", &files)
}

mod privasip {
    use privasip_message::{Limits, Message};

    pub(crate) fn parse_and_read(input: &[u8]) -> usize {
        read(&Message::parse_datagram(input, &Limits::default()).unwrap())
    }

    fn read(m: &Message<'_>) -> usize {
        let first = match m.method() {
            Some(method) => method.as_str().len(),
            None => usize::from(m.status().unwrap()),
        };
        let branch = m.top_via().unwrap().branch().map_or(0, str::len);
        let call_id = m.call_id().unwrap().len();
        let cseq = m.cseq().unwrap();
        let from_tag = m.from().unwrap().tag().map_or(0, str::len);
        let to_user = m
            .to()
            .unwrap()
            .uri
            .as_sip()
            .and_then(|u| u.user)
            .map_or(0, str::len);
        let clen = m.content_length().unwrap_or(0);
        first
            + branch
            + call_id
            + cseq.seq as usize
            + cseq.method.as_str().len()
            + from_tag
            + to_user
            + clen
            + m.body().len()
    }

    pub(crate) fn parse_only(input: &[u8]) -> bool {
        Message::parse_datagram(input, &Limits::default()).is_ok()
    }

    /// What the proxy does with a message it receives: every known header
    /// checked, then the routing headers read (from what validation kept).
    pub(crate) fn validate_and_read(input: &[u8]) -> usize {
        let limits = Limits::default();
        read(
            &Message::parse_datagram(input, &limits)
                .and_then(|m| m.validated(&limits))
                .unwrap(),
        )
    }

    pub(crate) fn validate_only(input: &[u8]) -> bool {
        let limits = Limits::default();
        Message::parse_datagram(input, &limits)
            .and_then(|m| m.validated(&limits))
            .is_ok()
    }
}

mod rsip_parser {
    use rsip::prelude::*;

    pub(crate) fn parse_and_read(input: &[u8]) -> usize {
        let msg = rsip::SipMessage::try_from(input).unwrap();
        let first = match &msg {
            rsip::SipMessage::Request(r) => r.method as usize,
            rsip::SipMessage::Response(r) => r.status_code.code() as usize,
        };
        let via = msg.via_header().unwrap().typed().unwrap();
        let branch = via.branch().map(|b| b.value().len()).unwrap_or(0);
        let call_id = msg.call_id_header().unwrap().value().len();
        let cseq = msg.cseq_header().unwrap().typed().unwrap();
        let from_tag = msg
            .from_header()
            .unwrap()
            .typed()
            .unwrap()
            .tag()
            .map(|t| t.value().len())
            .unwrap_or(0);
        let to_uri = msg.to_header().unwrap().uri().unwrap();
        let to_user = to_uri.auth.as_ref().map(|a| a.user.len()).unwrap_or(0);
        let clen = msg
            .headers()
            .iter()
            .find_map(|h| match h {
                rsip::Header::ContentLength(c) => c.length().ok(),
                _ => None,
            })
            .unwrap_or(0) as usize;
        first
            + branch
            + call_id
            + cseq.seq as usize
            + cseq.method as usize
            + from_tag
            + to_user
            + clen
            + msg.body().len()
    }

    pub(crate) fn parse_only(input: &[u8]) -> bool {
        rsip::SipMessage::try_from(input).is_ok()
    }
}

mod rsipstack_parser {
    use rsipstack::sip::prelude::*;
    use rsipstack::sip::{Header, SipMessage};

    pub(crate) fn parse_and_read(input: &[u8]) -> usize {
        let msg = SipMessage::try_from(input).unwrap();
        let (first, body) = match &msg {
            SipMessage::Request(r) => (r.method as usize, r.body.len()),
            SipMessage::Response(r) => (r.status_code.code() as usize, r.body.len()),
        };
        let via = msg.via_header().unwrap().typed().unwrap();
        let branch = via.branch().map(|b| b.len()).unwrap_or(0);
        let call_id = msg.call_id_header().unwrap().value().len();
        let cseq = msg.cseq_header().unwrap().typed().unwrap();
        let from_tag = msg
            .from_header()
            .unwrap()
            .typed()
            .unwrap()
            .tag()
            .map(|t| t.len())
            .unwrap_or(0);
        let to_uri = msg.to_header().unwrap().uri().unwrap();
        let to_user = to_uri.auth.as_ref().map(|a| a.user.len()).unwrap_or(0);
        let clen = msg
            .headers()
            .iter()
            .find_map(|h| match h {
                Header::ContentLength(c) => c.value().trim().parse::<usize>().ok(),
                _ => None,
            })
            .unwrap_or(0);
        first
            + branch
            + call_id
            + cseq.seq as usize
            + cseq.method as usize
            + from_tag
            + to_user
            + clen
            + body
    }

    pub(crate) fn parse_only(input: &[u8]) -> bool {
        SipMessage::try_from(input).is_ok()
    }
}

mod ezk_parser {
    use bytes::Bytes;
    use ezk_sip_types::header::typed::{CSeq, CallID, ContentLength, FromTo, Via};
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    use ezk_sip_types::uri::SipUriUserPart;
    use ezk_sip_types::{Headers, Method, Name};

    /// ezk has no one-call message parser; this is what its own transport
    /// layer does (sip-core `parse_complete_sip`). It takes `Bytes`, so the
    /// input is handed over as `Bytes` without a copy.
    fn parse(buffer: &Bytes) -> Option<(MessageLine, Headers, Bytes)> {
        let mut parser = PullParser::new(buffer, 0);
        let mut start = None::<MessageLine>;
        let mut headers = Headers::new();
        for item in &mut parser {
            let line = std::str::from_utf8(item.ok()?).ok()?;
            if start.is_none() {
                start = Some(MessageLine::parse(buffer)(line).ok()?.1);
            } else {
                let l = Line::parse(buffer, line).ok()?.1;
                headers.insert(l.name, l.value);
            }
        }
        let head_end = parser.head_end();
        let clen = headers
            .get_named::<ContentLength>()
            .map(|c| c.0)
            .unwrap_or(0);
        let body = buffer.slice(head_end..(head_end + clen).min(buffer.len()));
        Some((start?, headers, body))
    }

    pub(crate) fn parse_and_read(buffer: &Bytes) -> usize {
        let (start, headers, body) = parse(buffer).unwrap();
        let first = match &start {
            MessageLine::Request(r) => (r.method == Method::INVITE) as usize + r.uri.sips as usize,
            MessageLine::Response(s) => s.code.into_u16() as usize,
        };
        let via = headers.get_named::<Via>().unwrap();
        let branch = via.params.get_val("branch").map(|b| b.len()).unwrap_or(0);
        let call_id = headers.get_named::<CallID>().unwrap().0.len();
        let cseq = headers.get_named::<CSeq>().unwrap();
        let from_tag = headers
            .get::<FromTo>(Name::FROM)
            .unwrap()
            .tag
            .map(|t| t.len())
            .unwrap_or(0);
        let to = headers.get::<FromTo>(Name::TO).unwrap();
        let to_user = match &to.uri.uri.user_part {
            SipUriUserPart::User(u) => u.len(),
            _ => 0,
        };
        let clen = headers
            .get_named::<ContentLength>()
            .map(|c| c.0)
            .unwrap_or(0);
        first
            + branch
            + call_id
            + cseq.cseq as usize
            + (cseq.method == Method::INVITE) as usize
            + from_tag
            + to_user
            + clen
            + body.len()
    }

    pub(crate) fn parse_only(buffer: &Bytes) -> bool {
        parse(buffer).is_some()
    }
}

fn realistic_messages(c: &mut Criterion) {
    for (name, bytes) in realistic() {
        let mut g = c.benchmark_group(format!("parse+read/{}", name.trim_end_matches(".sip")));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("privasip", |b| {
            b.iter(|| privasip::parse_and_read(black_box(&bytes)))
        });
        g.bench_function("privasip+validate", |b| {
            b.iter(|| privasip::validate_and_read(black_box(&bytes)))
        });
        g.bench_function("rsip", |b| {
            b.iter(|| rsip_parser::parse_and_read(black_box(&bytes)))
        });
        g.bench_function("rsipstack", |b| {
            b.iter(|| rsipstack_parser::parse_and_read(black_box(&bytes)))
        });
        let shared = bytes::Bytes::from(bytes.clone());
        g.bench_function("ezk-sip-types", |b| {
            b.iter(|| ezk_parser::parse_and_read(black_box(&shared)))
        });
        g.finish();
    }
}

/// The valid RFC 4475 messages. Each parser is timed on the same bytes: the
/// messages that every parser accepts (which ones a parser rejects is
/// printed once, before timing; rejecting a valid message is a correctness
/// gap, and leaving it out of one parser's total would compare different
/// work). privasip alone, with and without validating, is also timed
/// over all of them.
fn torture_corpus(c: &mut Criterion) {
    let all = rfc4475_valid();
    let shared: Vec<bytes::Bytes> = all
        .iter()
        .map(|(_, b)| bytes::Bytes::from(b.clone()))
        .collect();
    // Each parses message `i` and says whether it accepted it; privasip
    // first, privasip validating every header last.
    let parsers: [(&str, &dyn Fn(usize) -> bool); 5] = [
        ("privasip", &|i| privasip::parse_only(&all[i].1)),
        ("rsip", &|i| rsip_parser::parse_only(&all[i].1)),
        ("rsipstack", &|i| rsipstack_parser::parse_only(&all[i].1)),
        ("ezk-sip-types", &|i| ezk_parser::parse_only(&shared[i])),
        ("privasip+validate", &|i| privasip::validate_only(&all[i].1)),
    ];
    for (name, parse) in &parsers {
        let rejected: Vec<&str> = (0..all.len())
            .filter(|&i| !parse(i))
            .map(|i| all[i].0.as_str())
            .collect();
        eprintln!("rfc4475 valid messages {name} rejects: {rejected:?}");
    }
    let common: Vec<usize> = (0..all.len())
        .filter(|&i| parsers.iter().all(|(_, parse)| parse(i)))
        .collect();
    let bytes_of = |set: &[usize]| set.iter().map(|&i| all[i].1.len() as u64).sum::<u64>();

    let mut g = c.benchmark_group(format!(
        "parse/rfc4475-valid, accepted by all ({} msgs)",
        common.len()
    ));
    g.throughput(Throughput::Bytes(bytes_of(&common)));
    for (name, parse) in &parsers {
        g.bench_function(*name, |b| {
            b.iter(|| common.iter().filter(|&&i| parse(black_box(i))).count())
        });
    }
    g.finish();

    if std::env::var_os("PER_MSG").is_some() {
        for &i in &common {
            let mut g = c.benchmark_group(format!("permsg/{}", all[i].0));
            // privasip and rsipstack, the fastest of the others.
            for (name, parse) in [&parsers[0], &parsers[2]] {
                g.bench_function(*name, |b| b.iter(|| parse(black_box(i))));
            }
            g.finish();
        }
    }
    let every: Vec<usize> = (0..all.len()).collect();
    let mut g = c.benchmark_group(format!("parse/rfc4475-valid, all ({} msgs)", all.len()));
    g.throughput(Throughput::Bytes(bytes_of(&every)));
    for (name, parse) in [&parsers[0], &parsers[4]] {
        g.bench_function(*name, |b| {
            b.iter(|| every.iter().filter(|&&i| parse(black_box(i))).count())
        });
    }
    g.finish();
}

criterion_group!(benches, realistic_messages, torture_corpus);
criterion_main!(benches);
