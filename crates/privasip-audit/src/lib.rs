#![doc = include_str!("../README.md")]

mod capture;
mod linkage;
mod packet;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

pub use linkage::linking_values;
pub use packet::{Endpoint, Segment, Skipped, Transport, decode};

/// What kind of secret a needle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A user ID (the user part of a SIP URI, or a whole URI).
    Identity,
    /// A display name.
    DisplayName,
    /// A host address (matched in text and in IP headers).
    Address,
    /// An onion address (a party's long-term name on Tor).
    Onion,
    /// A domain (whose user a party is).
    Domain,
    /// A value that is the same in two calls: it links them.
    Linkage,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Identity => "user ID",
            Kind::DisplayName => "display name",
            Kind::Address => "address",
            Kind::Onion => "onion address",
            Kind::Domain => "domain",
            Kind::Linkage => "linking value",
        })
    }
}

#[derive(Clone, Debug)]
struct Needle {
    text: String,
    lower: Vec<u8>,
    kind: Kind,
    ip: Option<IpAddr>,
}

/// What must not appear.
#[derive(Clone, Debug, Default)]
pub struct Needles(Vec<Needle>);

impl Needles {
    /// No needles yet.
    pub fn new() -> Self {
        Needles(Vec::new())
    }

    fn add(mut self, text: &str, kind: Kind) -> Self {
        if !text.is_empty() {
            self.0.push(Needle {
                text: text.to_owned(),
                lower: text.to_ascii_lowercase().into_bytes(),
                kind,
                ip: text.parse().ok(),
            });
        }
        self
    }

    /// A user ID.
    pub fn identity(self, text: &str) -> Self {
        self.add(text, Kind::Identity)
    }

    /// A display name.
    pub fn display_name(self, text: &str) -> Self {
        self.add(text, Kind::DisplayName)
    }

    /// A host address (an IP address is also looked for in IP headers).
    pub fn address(self, text: &str) -> Self {
        self.add(text, Kind::Address)
    }

    /// An onion address.
    pub fn onion(self, text: &str) -> Self {
        self.add(text, Kind::Onion)
    }

    /// A domain.
    pub fn domain(self, text: &str) -> Self {
        self.add(text, Kind::Domain)
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn longest(&self) -> usize {
        self.0.iter().map(|n| n.lower.len()).max().unwrap_or(0)
    }
}

/// Where a finding is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A packet of a capture (numbered from 1, as Wireshark does).
    Packet {
        /// Its number in the capture.
        number: u64,
        /// UDP or TCP.
        transport: Transport,
        /// Sender.
        src: Endpoint,
        /// Receiver.
        dst: Endpoint,
    },
    /// A line of a text file (numbered from 1).
    Line(u64),
}

/// One appearance of a needle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The file (as named to the audit).
    pub source: String,
    /// The packet or line.
    pub place: Place,
    /// What kind of needle.
    pub kind: Kind,
    /// The needle as given.
    pub needle: String,
    /// Where in the packet or line: a SIP header name, "Request-Line",
    /// "IP source address", or the line itself.
    pub context: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Packet {
                number,
                transport,
                src,
                dst,
            } => write!(
                f,
                "{}: packet {number} ({} {src} -> {dst}): {} {:?} in {}",
                self.source,
                match transport {
                    Transport::Udp => "UDP",
                    Transport::Tcp => "TCP",
                },
                self.kind,
                self.needle,
                self.context
            ),
            Place::Line(n) => write!(
                f,
                "{}:{n}: {} {:?} in: {}",
                self.source, self.kind, self.needle, self.context
            ),
        }
    }
}

/// A capture that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Neither pcap nor pcapng.
    #[error("{0}: not a pcap or pcapng capture")]
    NotACapture(String),
    /// The capture is damaged.
    #[error("{0}: {1}")]
    Capture(String, String),
}

/// What was looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Covered {
    /// Files (captures and text).
    pub files: u64,
    /// Packets read from captures.
    pub packets: u64,
    /// Of them, UDP or TCP with a payload.
    pub payloads: u64,
    /// Text lines read.
    pub lines: u64,
}

/// An audit in progress: feed it captures and text, then read findings.
#[derive(Debug)]
pub struct Audit {
    needles: Needles,
    findings: Vec<Finding>,
    covered: Covered,
    /// Per TCP flow, the end of its last segment (to catch a needle split
    /// across two segments).
    tails: HashMap<(Endpoint, Endpoint), Vec<u8>>,
    lower: Vec<u8>,
}

impl Audit {
    /// An audit for `needles`.
    pub fn new(needles: Needles) -> Self {
        Audit {
            needles,
            findings: Vec::new(),
            covered: Covered::default(),
            tails: HashMap::new(),
            lower: Vec::new(),
        }
    }

    /// Every finding so far, in the order found.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// What was looked at so far.
    pub fn covered(&self) -> Covered {
        self.covered
    }

    /// Scans a text file's contents line by line.
    pub fn scan_text(&mut self, source: &str, text: &str) {
        self.covered.files += 1;
        for (i, line) in text.lines().enumerate() {
            self.covered.lines += 1;
            self.lower.clear();
            self.lower
                .extend(line.bytes().map(|b| b.to_ascii_lowercase()));
            for n in &self.needles.0 {
                if memchr::memmem::find_iter(&self.lower, &n.lower)
                    .any(|at| n.stands_alone(&self.lower, at))
                {
                    self.findings.push(Finding {
                        source: source.to_owned(),
                        place: Place::Line(i as u64 + 1),
                        kind: n.kind,
                        needle: n.text.clone(),
                        context: excerpt(line),
                    });
                }
            }
        }
    }

    /// Scans a pcap or pcapng capture held in memory.
    pub fn scan_capture(&mut self, source: &str, bytes: &[u8]) -> Result<(), AuditError> {
        self.covered.files += 1;
        capture::frames(source, bytes, |number, link, frame| {
            self.covered.packets += 1;
            if let Ok(segment) = decode(link, frame) {
                self.scan_segment(source, number, &segment);
            }
        })
    }

    fn scan_segment(&mut self, source: &str, number: u64, s: &Segment<'_>) {
        let place = Place::Packet {
            number,
            transport: s.transport,
            src: s.src,
            dst: s.dst,
        };
        for n in &self.needles.0 {
            let Some(ip) = n.ip else { continue };
            for (side, addr) in [("source", s.src.ip), ("destination", s.dst.ip)] {
                if addr == ip {
                    self.findings.push(Finding {
                        source: source.to_owned(),
                        place: place.clone(),
                        kind: n.kind,
                        needle: n.text.clone(),
                        context: format!("IP {side} address"),
                    });
                }
            }
        }
        if s.payload.is_empty() {
            return;
        }
        self.covered.payloads += 1;
        // For TCP, look at the previous segment's tail and this one
        // together; report only matches that end in this segment.
        let tail = match s.transport {
            Transport::Tcp => self.tails.remove(&(s.src, s.dst)).unwrap_or_default(),
            Transport::Udp => Vec::new(),
        };
        let mut data = tail;
        let fresh_from = data.len();
        data.extend_from_slice(s.payload);
        self.lower.clear();
        self.lower
            .extend(data.iter().map(|b| b.to_ascii_lowercase()));
        for n in &self.needles.0 {
            // One finding per needle and header line, however often it
            // shows there.
            let mut seen: Vec<String> = Vec::new();
            for at in memchr::memmem::find_iter(&self.lower, &n.lower) {
                if at + n.lower.len() <= fresh_from {
                    continue;
                }
                // A short ID turns up by chance in megabytes of TLS
                // records and Tor cells: only a needle in text counts,
                // and not inside a longer name (an onion address).
                if !in_text(&data, at, n.lower.len()) || !n.stands_alone(&data, at) {
                    continue;
                }
                // Named within this segment alone: a previous message's
                // end must not make this one's headers look like a body.
                let context = if at < fresh_from {
                    "a needle split across two TCP segments".to_owned()
                } else {
                    sip_context(&data[fresh_from..], at - fresh_from)
                };
                if seen.contains(&context) {
                    continue;
                }
                seen.push(context.clone());
                self.findings.push(Finding {
                    source: source.to_owned(),
                    place: place.clone(),
                    kind: n.kind,
                    needle: n.text.clone(),
                    context,
                });
            }
        }
        if s.transport == Transport::Tcp {
            let keep = self.needles.longest().saturating_sub(1);
            let start = data.len().saturating_sub(keep);
            self.tails.insert((s.src, s.dst), data[start..].to_vec());
        }
    }
}

impl Needle {
    /// Whether the match at `at` in `hay` is this needle on its own: a
    /// user ID is a whole word (`sip:bob@`, not the `bob` inside a random
    /// onion address or `bobby`); display names and addresses match as
    /// written.
    fn stands_alone(&self, hay: &[u8], at: usize) -> bool {
        if self.kind != Kind::Identity {
            return true;
        }
        let word = |i: Option<usize>| {
            i.and_then(|i| hay.get(i))
                .is_some_and(u8::is_ascii_alphanumeric)
        };
        !word(at.checked_sub(1)) && !word(Some(at + self.lower.len()))
    }
}

/// Whether the bytes around `data[at..at + len]` are text (at least 80%
/// printable ASCII in a window of 24 bytes each side). In random bytes
/// (ciphertext) about 38% are: a chance match sits in noise.
fn in_text(data: &[u8], at: usize, len: usize) -> bool {
    const SIDE: usize = 24;
    let window = &data[at.saturating_sub(SIDE)..(at + len + SIDE).min(data.len())];
    let printable = window
        .iter()
        .filter(|&&b| matches!(b, 0x20..=0x7e | b'\t' | b'\r' | b'\n'))
        .count();
    printable * 5 >= window.len() * 4
}

/// Names the part of a SIP message (or other text) that holds offset `at`.
fn sip_context(data: &[u8], at: usize) -> String {
    let line_start = data[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // A blank line before this one ends the headers.
    if memchr::memmem::find(&data[..line_start], b"\r\n\r\n").is_some()
        || memchr::memmem::find(&data[..line_start], b"\n\n").is_some()
    {
        return "the message body".to_owned();
    }
    let line_end = data[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| at + i);
    let line = String::from_utf8_lossy(&data[line_start..line_end]);
    let line = line.trim_end();
    if line_start == 0 {
        return if line.starts_with("SIP/") {
            "the Status-Line".to_owned()
        } else if line.ends_with("SIP/2.0") {
            "the Request-Line".to_owned()
        } else {
            format!("a non-SIP payload: {}", excerpt(line))
        };
    }
    match line.split_once(':') {
        Some((name, _)) if !name.is_empty() && !name.contains(' ') => {
            format!("header {name}: {}", excerpt(line))
        }
        _ => format!("a continuation line: {}", excerpt(line)),
    }
}

/// A line cut to a readable length.
fn excerpt(line: &str) -> String {
    const MAX: usize = 160;
    let line = line.trim();
    if line.len() <= MAX {
        return line.to_owned();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", line.get(..end).unwrap_or_default())
}

#[cfg(test)]
mod tests;
