//! Linkage: a value a party received in two calls links them, even when
//! it names no one. Handles, tags and tokens must be per call.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Finding, Kind, Place};

/// Values shorter than this are not identifiers (ports, `udp`, `lr`).
const MIN_LEN: usize = 12;

/// Header fields whose values could link calls (long and compact names).
const FIELDS: &[&str] = &[
    "via",
    "v",
    "contact",
    "m",
    "record-route",
    "route",
    "from",
    "f",
    "to",
    "t",
];

/// The values a party received in more than one call, from a trace of
/// what it received and sent (`=== received` / `=== sent`, then the
/// message, as `privasip ua --trace` writes): every word of at least
/// twelve characters in Via, Contact, Record-Route, Route, From and To of
/// the messages it received, grouped by Call-ID (REGISTER dialogs
/// excepted: they are the party's own), except words the party itself
/// sent (its own Via and Contact coming back tell it nothing). A word
/// containing one of `allowed` (the party's own proxy's name,
/// `anonymous.invalid`) is expected to repeat. One finding per linking
/// value, at the line where it repeats.
pub fn linking_values(source: &str, trace: &str, allowed: &[&str]) -> Vec<Finding> {
    let msgs = messages(trace);
    let own: BTreeSet<&str> = msgs
        .iter()
        .filter(|m| !m.received)
        .flat_map(|m| m.fields.iter().flat_map(|(_, _, v)| words(v)))
        .collect();
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for msg in &msgs {
        if !msg.received || msg.register {
            continue;
        }
        let Some(call) = &msg.call_id else { continue };
        for (line_no, name, value) in &msg.fields {
            for word in words(value) {
                if own.contains(word)
                    || allowed.iter().any(|a| {
                        !a.is_empty() && word.to_ascii_lowercase().contains(&a.to_ascii_lowercase())
                    })
                {
                    continue;
                }
                let entry = seen.entry(word.to_owned()).or_default();
                if entry.calls.insert(call.clone()) && entry.calls.len() == 2 {
                    entry.repeat = Some((*line_no, name.clone()));
                }
            }
        }
    }
    seen.into_iter()
        .filter_map(|(word, seen)| {
            let (line, name) = seen.repeat?;
            Some(Finding {
                source: source.to_owned(),
                place: Place::Line(line),
                kind: Kind::Linkage,
                needle: word,
                context: format!("header {name}, the same in two calls"),
            })
        })
        .collect()
}

/// Where a value was seen.
#[derive(Default)]
struct Seen {
    /// The Call-IDs it came with.
    calls: BTreeSet<String>,
    /// The line (and header) where it first came with a second Call-ID.
    repeat: Option<(u64, String)>,
}

/// The words of a header value that could identify (long enough).
fn words(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
        .filter(|w| w.len() >= MIN_LEN)
}

struct Msg {
    received: bool,
    register: bool,
    call_id: Option<String>,
    /// (line number, header name, value) of the fields that could link.
    fields: Vec<(u64, String, String)>,
}

fn messages(trace: &str) -> Vec<Msg> {
    let mut out: Vec<Msg> = Vec::new();
    let mut in_headers = false;
    for (i, line) in trace.lines().enumerate() {
        let line_no = i as u64 + 1;
        if let Some(dir) = line.strip_prefix("=== ") {
            out.push(Msg {
                received: dir.starts_with("received"),
                register: false,
                call_id: None,
                fields: Vec::new(),
            });
            in_headers = true;
            continue;
        }
        let Some(msg) = out.last_mut() else { continue };
        if !in_headers {
            continue;
        }
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            in_headers = false;
            continue;
        }
        if line.starts_with("REGISTER ") {
            msg.register = true;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            "call-id" | "i" => msg.call_id = Some(value.to_owned()),
            "cseq" if value.ends_with("REGISTER") => msg.register = true,
            n if FIELDS.contains(&n) => msg.fields.push((line_no, name.clone(), value.to_owned())),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(call_id: &str, contact: &str) -> String {
        format!(
            "=== received\nINVITE sip:me@x SIP/2.0\nVia: SIP/2.0/TCP proxy-own-name.onion:5060;branch=z9hG4bK{call_id}xxxxxxxxxxxx\n\
             Call-ID: {call_id}\nCSeq: 1 INVITE\nContact: <{contact}>\n\n"
        )
    }

    #[test]
    fn a_contact_repeated_across_calls_links_them() {
        let trace = call("c1aaaaaaaaaa", "sip:stablehandle123@h.onion")
            + &call("c2bbbbbbbbbb", "sip:stablehandle123@h.onion");
        let f = linking_values("bob.trace", &trace, &["proxy-own-name.onion"]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].needle, "stablehandle123");
        assert_eq!(f[0].place, Place::Line(13));
        let fresh = call("c1aaaaaaaaaa", "sip:handleone12345@h.onion")
            + &call("c2bbbbbbbbbb", "sip:handletwo12345@h.onion");
        assert!(linking_values("bob.trace", &fresh, &["proxy-own-name.onion"]).is_empty());
    }

    #[test]
    fn registrations_and_what_was_sent_do_not_count() {
        let reg = |id: &str| {
            format!(
                "=== received\nSIP/2.0 200 OK\nCall-ID: {id}\nCSeq: 1 REGISTER\nContact: <sip:myownflowhost.invalid>\n\n"
            )
        };
        let sent = |id: &str| {
            format!(
                "=== sent\nBYE sip:x SIP/2.0\nCall-ID: {id}\nContact: <sip:myownflowhost.invalid>\n\n"
            )
        };
        let trace = reg("r1") + &reg("r2") + &sent("c1") + &sent("c2");
        assert!(linking_values("t", &trace, &[]).is_empty());
        // Our own Contact echoed back to us in two calls links nothing.
        let echo = |id: &str| {
            format!(
                "=== received\nSIP/2.0 200 OK\nCall-ID: {id}\nCSeq: 1 BYE\nContact: <sip:myownflowhost.invalid>\n\n"
            )
        };
        let trace = sent("c1") + &echo("c1") + &echo("c2");
        assert!(linking_values("t", &trace, &[]).is_empty());
    }
}
