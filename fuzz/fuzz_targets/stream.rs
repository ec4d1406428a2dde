//! Any bytes as a TCP/Tor stream, fed in two pieces: never a panic, never
//! a frame outside the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privasip_message::{Frame, Limits, Message, StreamDecoder};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut decoder = StreamDecoder::new(limits.clone());
    let mut at = 0;
    // Each loop turn consumes input or stops, so this ends.
    for end in [split, data.len()] {
        loop {
            match decoder.decode(&data[at..end]) {
                Ok(Frame::Partial) | Err(_) => break,
                Ok(Frame::KeepAlive { len }) => at += len,
                Ok(Frame::Message { skip, len }) => {
                    let start = at + skip;
                    let _ = Message::parse_datagram(&data[start..start + len], &limits);
                    at = start + len;
                }
            }
            if at >= end {
                break;
            }
        }
    }
});
