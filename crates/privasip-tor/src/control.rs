//! The C tor control protocol (control-spec.txt): commands, replies and
//! asynchronous events over one connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A control port failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The port could not be reached or the connection broke.
    #[error("control port I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Tor answered with an error status.
    #[error("tor refused {command}: {code} {text}")]
    Refused {
        /// The command's first word.
        command: String,
        /// Tor's status code.
        code: u16,
        /// Tor's explanation.
        text: String,
    },
    /// Something that is not the control protocol.
    #[error("malformed control reply: {0:?}")]
    Malformed(String),
    /// No authentication method we support (cookie or none) is offered.
    #[error("tor offers no authentication method we support (enable CookieAuthentication)")]
    NoAuth,
}

/// One reply: a status and its lines (data blocks joined by newlines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status code (250 = OK, 650 = an event).
    pub code: u16,
    /// The text of each line after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// The value of `KEY=VALUE` in any line (the first one).
    pub fn value(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.split('\n').next().unwrap_or(v))
        })
    }
}

/// A control connection, authenticated.
pub struct ControlConn {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    events: VecDeque<Reply>,
}

impl ControlConn {
    /// Connects and authenticates (cookie, or none when tor asks none).
    pub async fn connect(addr: SocketAddr) -> Result<Self, ControlError> {
        let s = TcpStream::connect(addr).await?;
        let (rd, wr) = s.into_split();
        let mut c = ControlConn {
            rd: BufReader::new(rd),
            wr,
            events: VecDeque::new(),
        };
        let info = c.command("PROTOCOLINFO 1").await?;
        let auth = info
            .lines
            .iter()
            .find(|l| l.starts_with("AUTH "))
            .cloned()
            .unwrap_or_default();
        if auth.contains("COOKIE") {
            let path = cookie_path(&auth).ok_or(ControlError::NoAuth)?;
            let cookie = std::fs::read(&path)?;
            let hex: String = cookie.iter().map(|b| format!("{b:02X}")).collect();
            c.command(&format!("AUTHENTICATE {hex}")).await?;
        } else if auth.contains("NULL") {
            c.command("AUTHENTICATE").await?;
        } else {
            return Err(ControlError::NoAuth);
        }
        Ok(c)
    }

    /// Sends one command line and returns its reply; an error status
    /// becomes [`ControlError::Refused`]. Events that arrive meanwhile are
    /// kept for [`ControlConn::next_event`].
    pub async fn command(&mut self, line: &str) -> Result<Reply, ControlError> {
        self.wr.write_all(line.as_bytes()).await?;
        self.wr.write_all(b"\r\n").await?;
        loop {
            let r = self.read_reply().await?;
            if r.code / 100 == 6 {
                self.events.push_back(r);
                continue;
            }
            if r.code / 100 != 2 {
                return Err(ControlError::Refused {
                    command: line.split(' ').next().unwrap_or("").to_owned(),
                    code: r.code,
                    text: r.lines.join(" "),
                });
            }
            return Ok(r);
        }
    }

    /// The next asynchronous event (after `SETEVENTS`).
    pub async fn next_event(&mut self) -> Result<Reply, ControlError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        loop {
            let r = self.read_reply().await?;
            if r.code / 100 == 6 {
                return Ok(r);
            }
        }
    }

    async fn read_line(&mut self) -> Result<String, ControlError> {
        let mut line = String::new();
        // A control reply line is short; cap it so a broken peer cannot
        // make us buffer without end.
        let n = (&mut self.rd).take(64 * 1024).read_line(&mut line).await?;
        if n == 0 {
            return Err(ControlError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        while line.ends_with(['\r', '\n']) {
            line.pop();
        }
        Ok(line)
    }

    async fn read_reply(&mut self) -> Result<Reply, ControlError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.len() < 4 || !line.is_char_boundary(3) {
                return Err(ControlError::Malformed(line));
            }
            let code: u16 = line
                .get(..3)
                .unwrap_or_default()
                .parse()
                .map_err(|_| ControlError::Malformed(line.clone()))?;
            let sep = line.as_bytes()[3];
            let text = line.get(4..).unwrap_or_default().to_owned();
            match sep {
                b' ' => {
                    lines.push(text);
                    return Ok(Reply { code, lines });
                }
                b'-' => lines.push(text),
                b'+' => {
                    // A data block: lines up to a lone ".".
                    let mut block = text;
                    loop {
                        let l = self.read_line().await?;
                        if l == "." {
                            break;
                        }
                        block.push('\n');
                        block.push_str(l.strip_prefix('.').unwrap_or(&l));
                    }
                    lines.push(block);
                }
                _ => return Err(ControlError::Malformed(line)),
            }
        }
    }
}

/// `COOKIEFILE="..."` from a PROTOCOLINFO AUTH line.
fn cookie_path(auth: &str) -> Option<PathBuf> {
    let start = auth.find("COOKIEFILE=\"")? + "COOKIEFILE=\"".len();
    let rest = auth.get(start..).unwrap_or_default();
    let mut path = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(Path::new(&path).to_path_buf()),
            '\\' => path.push(chars.next()?),
            c => path.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_file_from_protocolinfo() {
        let line =
            r#"AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/tmp/a \"b\"/control_auth_cookie""#;
        assert_eq!(
            cookie_path(line),
            Some(PathBuf::from("/tmp/a \"b\"/control_auth_cookie"))
        );
        assert_eq!(cookie_path("AUTH METHODS=NULL"), None);
    }

    #[test]
    fn reply_values() {
        let r = Reply {
            code: 250,
            lines: vec!["ServiceID=abc".into(), "PrivateKey=ED25519-V3:xyz".into()],
        };
        assert_eq!(r.value("ServiceID"), Some("abc"));
        assert_eq!(r.value("PrivateKey"), Some("ED25519-V3:xyz"));
        assert_eq!(r.value("Missing"), None);
    }
}
