//! `privasip audit`: where do real identities still show?

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use privasip_audit::{Audit, Needles};

/// Look for real identities in packet captures and logs.
///
/// Give the user IDs, display names and host addresses that must not be
/// seen, and the captures (pcap or pcapng, e.g. from tcpdump -w) and log
/// files an observer would hold. Every appearance is reported with its
/// file, packet number and SIP header, or its line:
///
///   lan.pcap: packet 3 (UDP 127.0.0.1:18210 -> 127.0.0.1:18200): user ID "alice" in header From: ...
///   proxy-a.log:12: user ID "alice" in: ...
///
/// Matching ignores ASCII case; TCP needles split across two segments are
/// found too; addresses are also matched against IP headers. Encrypted
/// bytes (Tor cells, TLS) can only show what is in clear.
///
/// Exit status: 0 if nothing was found, 1 if anything was, 2 if a file
/// cannot be read or the command line is wrong.
///
/// Examples:
///   tcpdump -i lo -w lan.pcap udp port 5060 &  ...  privasip audit --id alice --name "Alice Liddell" --pcap lan.pcap
///   privasip audit --id alice --id bob proxy-a.log proxy-b.log
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// A user ID that must not appear (repeatable), e.g. alice.
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<String>,
    /// A display name that must not appear (repeatable).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// A host address that must not appear, in text or IP headers
    /// (repeatable).
    #[arg(long = "address", value_name = "ADDR")]
    addresses: Vec<String>,
    /// A packet capture, pcap or pcapng (repeatable).
    #[arg(long = "pcap", value_name = "FILE")]
    captures: Vec<PathBuf>,
    /// Text files (logs, traces) to search line by line.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print only the summary line, not every finding.
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn run(args: &Args) -> ExitCode {
    let mut needles = Needles::new();
    for id in &args.ids {
        needles = needles.identity(id);
    }
    for name in &args.names {
        needles = needles.display_name(name);
    }
    for a in &args.addresses {
        needles = needles.address(a);
    }
    if needles.is_empty() {
        eprintln!("privasip audit: nothing to look for: give --id, --name or --address");
        return ExitCode::from(2);
    }
    if args.captures.is_empty() && args.files.is_empty() {
        eprintln!("privasip audit: nowhere to look: give --pcap FILE or log files");
        return ExitCode::from(2);
    }
    let mut audit = Audit::new(needles);
    for p in &args.captures {
        let name = p.display().to_string();
        let scanned = std::fs::read(p)
            .map_err(|e| format!("{name}: {e}"))
            .and_then(|bytes| audit.scan_capture(&name, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = scanned {
            eprintln!("privasip audit: {e}");
            return ExitCode::from(2);
        }
    }
    for p in &args.files {
        let name = p.display().to_string();
        match std::fs::read(p) {
            Ok(bytes) => audit.scan_text(&name, &String::from_utf8_lossy(&bytes)),
            Err(e) => {
                eprintln!("privasip audit: {name}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if !args.quiet {
        for f in audit.findings() {
            let _ = writeln!(out, "{f}");
        }
    }
    let c = audit.covered();
    let looked = format!(
        "{} file(s): {} packet(s), {} with a payload; {} line(s)",
        c.files, c.packets, c.payloads, c.lines
    );
    let n = audit.findings().len();
    if n == 0 {
        let _ = writeln!(out, "audit: clean: nothing found in {looked}");
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(out, "audit: {n} finding(s) in {looked}");
        ExitCode::FAILURE
    }
}
