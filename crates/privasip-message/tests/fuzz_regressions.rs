//! Inputs the fuzzers once crashed on (testdata/fuzz-regressions): each
//! must now give a result, valid or not, without panicking, in both
//! framings.

use std::path::Path;

use privasip_message::{Frame, Limits, Message, StreamDecoder};

#[test]
fn every_saved_crash_input_parses_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz-regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz-regressions directory") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        if let Ok(mut m) = Message::parse_datagram(&bytes, &Limits::default()) {
            let _ = (
                m.top_via(),
                m.vias(),
                m.from(),
                m.to(),
                m.cseq(),
                m.contacts(),
            );
            let _ = m.validate(&Limits::default());
            let printed = m.to_bytes();
            Message::parse_datagram(&printed, &Limits::default()).expect("printed parses");
        }
        let mut decoder = StreamDecoder::new(Limits::default());
        if let Ok(Frame::Message { skip, len }) = decoder.decode(&bytes) {
            let _ = Message::parse_datagram(&bytes[skip..skip + len], &Limits::default());
        }
        seen += 1;
    }
    assert!(seen > 0, "no regression inputs found in {}", dir.display());
}

#[test]
fn multi_byte_utf8_in_start_line_and_date_is_an_error_not_a_panic() {
    for bytes in [
        "OPTĬNS sip:u@h SIP/2.0\r\nContent-Length: 0\r\n\r\n",
        "SĬP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        "OPTIONS sip:u@h SĬP/2.0\r\nContent-Length: 0\r\n\r\n",
        "OPTIONS sip:u@h SIP/2.0\r\nDate: SĬ, 13 Nov 2010 23:29:00 GMT\r\n\r\n",
        "OPTIONS sip:u@h SIP/2.0\r\nDate: Sat, 13 NĬ 2010 23:29:00 GMT\r\n\r\n",
    ] {
        assert!(
            Message::parse_datagram(bytes.as_bytes(), &Limits::default())
                .and_then(|m| m.validated(&Limits::default()))
                .is_err(),
            "{bytes:?}"
        );
    }
}
