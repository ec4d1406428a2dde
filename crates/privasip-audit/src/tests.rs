use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};

use super::*;

/// An Ethernet/IPv4 frame from 127.0.0.1:5060 to 127.0.0.2:5061.
pub(crate) fn frame(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    let l4 = if proto == 17 { 8 } else { 20 };
    let total = (20 + l4 + payload.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        proto,
    ]);
    f.extend_from_slice(&[0, 0, 127, 0, 0, 1, 127, 0, 0, 2]);
    f.extend_from_slice(&[0x13, 0xc4, 0x13, 0xc5]);
    if proto == 17 {
        let ulen = (8 + payload.len()) as u16;
        f.extend_from_slice(&[(ulen >> 8) as u8, ulen as u8, 0, 0]);
    } else {
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&[0x50, 0x18, 0, 0, 0, 0, 0, 0]);
    }
    f.extend_from_slice(payload);
    f
}

fn capture(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new()).expect("writer");
    for f in frames {
        w.write_packet(&PcapPacket::new(Duration::ZERO, f.len() as u32, f))
            .expect("write");
    }
    w.into_writer()
}

fn needles() -> Needles {
    Needles::new()
        .identity("alice")
        .display_name("Alice Liddell")
        .address("127.0.0.9")
}

const INVITE: &[u8] = b"INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
From: \"Alice Liddell\" <sip:alice@a.example>;tag=1\r\n\
To: <sip:bob@b.example>\r\n\
Call-ID: 1@x\r\nCSeq: 1 INVITE\r\nContent-Length: 9\r\n\r\no=alice\r\n";

#[test]
fn names_the_packet_and_the_header() {
    let cap = capture(&[
        frame(17, b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
        frame(17, INVITE),
    ]);
    let mut audit = Audit::new(needles());
    audit.scan_capture("lan.pcap", &cap).expect("reads");
    let found: Vec<String> = audit.findings().iter().map(|f| f.to_string()).collect();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(
        found[0],
        "lan.pcap: packet 2 (UDP 127.0.0.1:5060 -> 127.0.0.2:5061): user ID \"alice\" in header From: \
         From: \"Alice Liddell\" <sip:alice@a.example>;tag=1"
    );
    assert!(found[1].contains("user ID \"alice\" in the message body"));
    assert!(found[2].contains("display name \"Alice Liddell\" in header From"));
    assert_eq!(
        audit.covered(),
        Covered {
            files: 1,
            packets: 2,
            payloads: 2,
            lines: 0
        }
    );
}

#[test]
fn finds_a_needle_split_across_tcp_segments() {
    let cap = capture(&[frame(6, b"From: <sip:al"), frame(6, b"ice@a.example>\r\n")]);
    let mut audit = Audit::new(needles());
    audit.scan_capture("tcp.pcap", &cap).expect("reads");
    assert_eq!(audit.findings().len(), 1);
    assert!(matches!(
        audit.findings()[0].place,
        Place::Packet { number: 2, .. }
    ));
    assert_eq!(
        audit.findings()[0].context,
        "a needle split across two TCP segments"
    );
}

#[test]
fn addresses_are_found_in_ip_headers() {
    let mut f = frame(17, b"hello");
    f[14 + 12..14 + 16].copy_from_slice(&[127, 0, 0, 9]);
    let mut audit = Audit::new(needles());
    audit.scan_capture("a.pcap", &capture(&[f])).expect("reads");
    assert_eq!(audit.findings().len(), 1);
    assert_eq!(audit.findings()[0].context, "IP source address");
}

#[test]
fn a_clean_capture_has_no_findings() {
    let clean = b"INVITE sip:ps1.QmFzZTY0@b.example SIP/2.0\r\nFrom: <sip:ps1.eHl6@a.example>;tag=1\r\n\r\n";
    let mut audit = Audit::new(needles());
    audit
        .scan_capture("lan.pcap", &capture(&[frame(17, clean)]))
        .expect("reads");
    assert!(audit.findings().is_empty());
}

#[test]
fn damaged_captures_are_errors_not_panics() {
    let cap = capture(&[frame(17, INVITE), frame(17, INVITE)]);
    let mut audit = Audit::new(needles());
    assert!(matches!(
        audit.scan_capture("x", b"not a capture at all"),
        Err(AuditError::NotACapture(_))
    ));
    for n in 0..cap.len() {
        let _ = audit.scan_capture("cut.pcap", &cap[..n]);
    }
    let mut garbled = cap.clone();
    garbled[30] = 0xff;
    let _ = audit.scan_capture("garbled.pcap", &garbled);
}

#[test]
fn long_log_lines_are_cut_on_a_char_boundary() {
    let line = format!("{}é alice", "x".repeat(159));
    let mut audit = Audit::new(needles());
    audit.scan_text("a.log", &line);
    assert_eq!(audit.findings().len(), 1);
    assert!(audit.findings()[0].context.ends_with('…'));
}

#[test]
fn a_chance_match_in_ciphertext_is_not_a_finding() {
    // Pseudo-random bytes (as in a TLS record or a Tor cell) with "alice"
    // in the middle, and the same name in a line of text.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise: Vec<u8> = (0..200)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    noise.splice(100..100, b"alice".iter().copied());
    let mut a = Audit::new(needles());
    a.scan_capture("c", &capture(&[frame(6, &noise)]))
        .expect("scan");
    assert!(a.findings().is_empty(), "{:?}", a.findings());
    let mut a = Audit::new(needles());
    a.scan_capture(
        "t",
        &capture(&[frame(6, b"\x17\x03\x03 user alice logged in\r\n")]),
    )
    .expect("scan");
    assert_eq!(a.findings().len(), 1);
}

#[test]
fn a_user_id_counts_as_a_whole_word_only() {
    let needles = || Needles::new().identity("bob");
    let mut a = Audit::new(needles());
    a.scan_text(
        "log",
        "Contact: <sip:d6qjclmbv72wjevklckqhqsjvrwsyppcmfmp7rm3bjwev33bobjqyvad.onion:5060>\nbobby\n",
    );
    let invite =
        b"INVITE sip:x@d6qj33bobjqyvad.onion SIP/2.0\r\nContact: <sip:x@bobjq.onion>\r\n\r\n";
    a.scan_capture("c", &capture(&[frame(17, invite)]))
        .expect("scan");
    assert!(a.findings().is_empty(), "{:?}", a.findings());
    a.scan_text("log", "To: <sip:bob@b.example>\n");
    a.scan_capture(
        "c",
        &capture(&[frame(17, b"From: <sip:Bob@b.example>\r\n\r\n")]),
    )
    .expect("scan");
    assert_eq!(a.findings().len(), 2, "{:?}", a.findings());
}
