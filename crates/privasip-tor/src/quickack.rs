//! Reading from a socket that tor writes to, without waiting on Nagle.
//!
//! tor leaves Nagle's algorithm on for its sockets, those to us included
//! (a SOCKS client's, an onion service's local target). When tor writes
//! to us twice in a row, the second write waits for our ACK of the first,
//! and Linux delays that ACK by up to 40 ms. Between tor daemons the same
//! pair costs a steady ~43 ms per stream on loopback (see BENCHMARKS.md);
//! that part is tor's. Ours is quick-ACK mode on the sockets tor writes
//! to. Linux drops out of it by itself, so it is re-armed after every read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

/// The read half of a TCP connection to tor, acknowledging at once.
#[derive(Debug)]
pub(crate) struct QuickAckReader(OwnedReadHalf);

impl QuickAckReader {
    pub(crate) fn new(half: OwnedReadHalf) -> Self {
        arm(half.as_ref());
        QuickAckReader(half)
    }
}

#[cfg(target_os = "linux")]
fn arm(s: &TcpStream) {
    // Best effort: without it the stream still works, only slower.
    let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn arm(_: &TcpStream) {}

impl AsyncRead for QuickAckReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.0).poll_read(cx, buf);
        if r.is_ready() {
            arm(self.0.as_ref());
        }
        r
    }
}
