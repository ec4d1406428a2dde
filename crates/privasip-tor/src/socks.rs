//! SOCKS5 (RFC 1928) with username/password (RFC 1929) for isolation.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A SOCKS5 failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocksError {
    /// The proxy could not be reached or the stream broke.
    #[error("SOCKS proxy I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The proxy answered something that is not SOCKS5.
    #[error("SOCKS proxy spoke something other than SOCKS5")]
    Protocol,
    /// The proxy refused our authentication.
    #[error("SOCKS proxy refused the username/password")]
    Auth,
    /// The proxy could not connect (RFC 1928 reply code, and tor's meaning).
    #[error("SOCKS connect failed: {}", reply_text(*.0))]
    Refused(u8),
    /// The host name does not fit SOCKS5 (over 255 bytes).
    #[error("host name too long for SOCKS5")]
    HostTooLong,
}

fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable (onion service descriptor not found or unreachable)",
        5 => "connection refused",
        6 => "TTL expired (rendezvous or circuit timed out)",
        7 => "command not supported",
        8 => "address type not supported",
        0xF0 => "onion service descriptor not found",
        0xF1 => "onion service descriptor invalid",
        0xF2 => "onion service introduction failed",
        0xF3 => "onion service rendezvous failed",
        0xF4 => "onion service needs client authorization",
        0xF5 => "onion service client authorization wrong",
        0xF6 => "onion address invalid",
        0xF7 => "onion service introduction timed out",
        _ => "unknown reply code",
    }
}

/// Connects through the SOCKS5 proxy at `proxy` to `host:port`, sending
/// `host` as a name (the proxy resolves it, or, for tor, never does for
/// `.onion`). The username/password pair selects tor's circuit isolation.
pub async fn socks5_connect(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    user: &str,
    password: &str,
) -> Result<TcpStream, SocksError> {
    if host.len() > 255 || user.len() > 255 || password.len() > 255 {
        return Err(SocksError::HostTooLong);
    }
    let mut s = TcpStream::connect(proxy).await?;
    // Tor leaves Nagle on: small SIP messages would wait for ACKs.
    s.set_nodelay(true)?;
    // Each step waits for its answer: tor does not read ahead across the
    // SOCKS5 negotiation. (The round trips are on loopback.)
    s.write_all(&[5, 1, 2]).await?;
    let mut two = [0u8; 2];
    s.read_exact(&mut two).await?;
    if two != [5, 2] {
        return Err(SocksError::Protocol);
    }
    let mut auth = Vec::with_capacity(3 + user.len() + password.len());
    auth.extend_from_slice(&[1, user.len() as u8]);
    auth.extend_from_slice(user.as_bytes());
    auth.push(password.len() as u8);
    auth.extend_from_slice(password.as_bytes());
    s.write_all(&auth).await?;
    s.read_exact(&mut two).await?;
    if two[1] != 0 {
        return Err(SocksError::Auth);
    }
    let mut req = Vec::with_capacity(7 + host.len());
    req.extend_from_slice(&[5, 1, 0, 3, host.len() as u8]);
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(SocksError::Protocol);
    }
    if head[1] != 0 {
        return Err(SocksError::Refused(head[1]));
    }
    let skip = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await?;
            usize::from(n[0]) + 2
        }
        _ => return Err(SocksError::Protocol),
    };
    let mut rest = vec![0u8; skip];
    s.read_exact(&mut rest).await?;
    Ok(s)
}
