#![doc = include_str!("../README.md")]

mod backoff;

pub use backoff::Backoff;

use std::future::Future;
use std::time::Duration;

use privasip_message::{Frame, Limits, StreamDecoder};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// How long a stream may stay silent, and take to finish a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A stream with no bytes for this long is closed (`None`: never, for
    /// a user agent's own link to its proxy).
    pub idle: Option<Duration>,
    /// A message begun must be complete within this long.
    pub message: Duration,
}

/// Why [`read_messages`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The peer closed the stream.
    Closed,
    /// Reading failed.
    ReadError,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// A message took longer than the message timeout.
    TooSlow,
    /// The framing was lost (an oversized or malformed head): nothing
    /// after it can be trusted.
    BadFraming,
    /// `on_message` asked to stop (its receiver is gone).
    Stopped,
}

impl End {
    /// Whether the peer misbehaved (for the driver's counters).
    pub fn is_peers_fault(self) -> bool {
        matches!(self, End::TooSlow | End::BadFraming)
    }
}

/// A read is given at least this much room...
const READ_AT_LEAST: usize = 1024;
/// ...by growing the buffer this much.
const READ_CHUNK: usize = 4096;
/// An empty buffer larger than this is given back.
const IDLE_CAPACITY: usize = 16 * 1024;

/// Reads SIP messages from `rd` until it ends, and says why. Each
/// complete message goes to `on_message` (which returns false to stop);
/// each keep-alive ping is answered by calling `pong` (which should send
/// a single CRLF, RFC 5626 §4.4.1).
pub async fn read_messages<R, F, Fut>(
    rd: &mut R,
    limits: Limits,
    timeouts: Timeouts,
    mut pong: impl FnMut(),
    mut on_message: F,
) -> End
where
    R: AsyncRead + Unpin,
    F: FnMut(Vec<u8>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut decoder = StreamDecoder::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    // When the message now in `buf` began.
    let mut partial_since: Option<Instant> = None;
    loop {
        // How long this read may wait: what is left of the message
        // timeout for a message begun, the idle timeout (if any) otherwise.
        let wait = match partial_since {
            Some(t) => {
                let left = timeouts.message.saturating_sub(t.elapsed());
                Some(timeouts.idle.map_or(left, |i| left.min(i)))
            }
            None => timeouts.idle,
        };
        if buf.capacity() - buf.len() < READ_AT_LEAST {
            buf.reserve(READ_CHUNK);
        }
        let read = rd.read_buf(&mut buf);
        let n = match wait {
            None => read.await,
            Some(wait) => match tokio::time::timeout(wait, read).await {
                Ok(r) => r,
                Err(_) if partial_since.is_some() => return End::TooSlow,
                Err(_) => return End::Idle,
            },
        };
        match n {
            Ok(0) => return End::Closed,
            Err(_) => return End::ReadError,
            Ok(_) => {}
        }
        let mut progressed = false;
        loop {
            match decoder.decode(&buf) {
                Ok(Frame::Partial) => break,
                Ok(Frame::KeepAlive { len }) => {
                    progressed = true;
                    buf.drain(..len);
                    pong();
                }
                Ok(Frame::Message { skip, len }) => {
                    let Some(msg) = buf.get(skip..skip + len).map(<[u8]>::to_vec) else {
                        return End::BadFraming;
                    };
                    buf.drain(..skip + len);
                    progressed = true;
                    if !on_message(msg).await {
                        return End::Stopped;
                    }
                }
                Err(_) => return End::BadFraming,
            }
        }
        if buf.is_empty() && buf.capacity() > IDLE_CAPACITY {
            buf = Vec::new();
        }
        // The clock runs from when the unfinished message in `buf` began
        // (about now, if a message just completed before it). CRLFs alone
        // begin nothing: a single one is the pong that answers our own
        // keep-alive (RFC 5626 §4.4.1), and must not cut the stream off a
        // message timeout later.
        let begun = !b"\r\n\r\n".starts_with(&buf);
        partial_since = match (begun, partial_since) {
            (false, _) => None,
            (true, Some(since)) if !progressed => Some(since),
            (true, _) => Some(Instant::now()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const OPTIONS: &[u8] =
        b"OPTIONS sip:b.example SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKs1\r\n\
        Max-Forwards: 70\r\nTo: <sip:b.example>\r\nFrom: <sip:a@b.example>;tag=1\r\n\
        Call-ID: s1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    fn timeouts() -> Timeouts {
        Timeouts {
            idle: Some(Duration::from_secs(60)),
            message: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn messages_keepalives_and_the_end() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let mut input = OPTIONS.to_vec();
        input.extend_from_slice(b"\r\n\r\n");
        input.extend_from_slice(OPTIONS);
        a.write_all(&input).await.expect("write");
        drop(a);
        let mut got = Vec::new();
        let mut pongs = 0;
        let end = read_messages(
            &mut b,
            Limits::default(),
            timeouts(),
            || pongs += 1,
            |m| {
                got.push(m);
                async { true }
            },
        )
        .await;
        assert_eq!(end, End::Closed);
        assert_eq!(got, [OPTIONS.to_vec(), OPTIONS.to_vec()]);
        assert_eq!(pongs, 1);
    }

    /// How reading `b` ends, its messages dropped.
    async fn ending(b: &mut tokio::io::DuplexStream) -> End {
        read_messages(b, Limits::default(), timeouts(), || {}, |_| async { true }).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_message_and_an_idle_stream_are_cut_off() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(&OPTIONS[..20]).await.expect("write");
        let end = ending(&mut b).await;
        assert_eq!(end, End::TooSlow);
        assert!(end.is_peers_fault());
        let (_a, mut b) = tokio::io::duplex(4096);
        let end = ending(&mut b).await;
        assert_eq!(end, End::Idle);
    }

    /// The pong that answers our keep-alive is a lone CRLF: it is no
    /// message begun, so a quiet stream that pinged is not cut off as too
    /// slow (it was, 32 s after each pong, before).
    #[tokio::test(start_paused = true)]
    async fn a_pong_is_not_a_message_begun() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(b"\r\n").await.expect("write");
        let quiet = Timeouts {
            idle: None,
            message: Duration::from_secs(5),
        };
        let reading = read_messages(&mut b, Limits::default(), quiet, || {}, |_| async { true });
        let cut = tokio::time::timeout(Duration::from_secs(3600), reading).await;
        assert!(cut.is_err(), "the stream ended: {cut:?}");
        // A pong then a message still frames.
        let (mut a, mut b) = tokio::io::duplex(4096);
        let mut input = b"\r\n".to_vec();
        input.extend_from_slice(OPTIONS);
        a.write_all(&input).await.expect("write");
        drop(a);
        let mut got = 0;
        let end = read_messages(
            &mut b,
            Limits::default(),
            quiet,
            || {},
            |_| {
                got += 1;
                async { true }
            },
        )
        .await;
        assert_eq!((end, got), (End::Closed, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn lost_framing_ends_the_stream() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let huge = vec![b'A'; 200_000];
        a.write_all(&huge).await.expect("write");
        let end = ending(&mut b).await;
        assert_eq!(end, End::BadFraming);
    }
}
