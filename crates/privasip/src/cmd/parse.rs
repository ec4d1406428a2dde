//! `privasip parse`: check SIP messages in files the way the proxy would.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use privasip_message::{Frame, HasSipStatus, Limits, Message, ParseError, StreamDecoder};

/// Check SIP messages the way the privasip proxy would parse them.
///
/// Each FILE holds one message as one UDP datagram would (the default), or
/// with --stream, one or more messages back to back as on a TCP or Tor
/// stream, where every message needs a Content-Length. One line per file:
///
///   FILE: ok INVITE            (a request; a response shows its status code)
///   FILE: invalid: REASON (STATUS)   (STATUS is what a proxy answers with)
///
/// Exit status: 0 if every file is valid, 1 if any is invalid, 2 if a file
/// cannot be read or the command line is wrong.
///
/// Examples:
///   privasip parse testdata/rfc4475/*.dat
///   privasip parse --print invite.sip        # show what would be forwarded
///   tcpflow-output | privasip parse --stream -
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// Files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Treat each file as a byte stream of back-to-back messages (TCP,
    /// TLS, Tor): Content-Length is required, CRLF keep-alives are skipped.
    #[arg(long, conflicts_with = "datagram")]
    stream: bool,

    /// Treat each file as one datagram (UDP): octets after Content-Length
    /// are ignored, a missing Content-Length means "to the end". The default.
    #[arg(long)]
    datagram: bool,

    /// After each valid message, print it as privasip would forward it
    /// (untouched lines byte for byte, Content-Length fixed).
    #[arg(long)]
    print: bool,

    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_message_size, value_name = "BYTES")]
    max_size: usize,
}

pub(crate) fn run(args: &Args) -> ExitCode {
    let limits = Limits {
        max_message_size: args.max_size,
        ..Limits::default()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut any_invalid = false;
    let mut unreadable = false;
    for path in &args.files {
        let name = path.display().to_string();
        let bytes = match read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                unreadable = true;
                continue;
            }
        };
        let verdict = if args.stream {
            check_stream(&bytes, &limits, args.print)
        } else {
            check_datagram(&bytes, &limits, args.print)
        };
        let _ = match verdict {
            Ok((summary, printed)) => {
                let _ = writeln!(out, "{name}: ok {summary}");
                out.write_all(&printed)
            }
            Err(reason) => {
                any_invalid = true;
                writeln!(out, "{name}: invalid: {reason}")
            }
        };
    }
    if unreadable {
        ExitCode::from(2)
    } else if any_invalid {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn read(path: &PathBuf) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut buf)?;
    } else {
        buf = std::fs::read(path)?;
    }
    Ok(buf)
}

/// What a message is, in one word: its method or status code.
fn label(m: &Message<'_>) -> String {
    match (m.method(), m.status()) {
        (Some(method), _) => method.to_string(),
        (None, Some(code)) => code.to_string(),
        (None, None) => "?".to_owned(),
    }
}

fn reason(e: &ParseError) -> String {
    format!("{e} ({})", e.sip_status())
}

fn check_datagram(bytes: &[u8], limits: &Limits, print: bool) -> Result<(String, Vec<u8>), String> {
    let m = Message::parse_datagram(bytes, limits)
        .and_then(|m| m.validated(limits))
        .map_err(|e| reason(&e))?;
    let printed = if print { m.to_bytes() } else { Vec::new() };
    Ok((label(&m), printed))
}

fn check_stream(bytes: &[u8], limits: &Limits, print: bool) -> Result<(String, Vec<u8>), String> {
    let mut decoder = StreamDecoder::new(limits.clone());
    let mut at = 0;
    let mut labels = Vec::new();
    let mut printed = Vec::new();
    while at < bytes.len() {
        match decoder
            .decode(&bytes[at..])
            .map_err(|e| format!("at byte {at}: {}", reason(&e)))?
        {
            Frame::KeepAlive { len } => at += len,
            Frame::Partial if bytes[at..].iter().all(|&b| b == b'\r' || b == b'\n') => break,
            Frame::Partial => {
                return Err(format!(
                    "at byte {at}: incomplete message ({} bytes, stream ends)",
                    bytes.len() - at
                ));
            }
            Frame::Message { skip, len } => {
                let start = at + skip;
                let m = Message::parse_datagram(&bytes[start..start + len], limits)
                    .and_then(|m| m.validated(limits))
                    .map_err(|e| format!("at byte {start}: {}", reason(&e)))?;
                labels.push(label(&m));
                if print {
                    m.write_to(&mut printed);
                }
                at = start + len;
            }
        }
    }
    match labels.len() {
        0 => Err("no message".to_owned()),
        1 => Ok((labels.remove(0), printed)),
        n => Ok((format!("{n} messages: {}", labels.join(", ")), printed)),
    }
}
