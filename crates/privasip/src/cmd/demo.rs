//! `privasip demo`: a whole PrivaSIP-over-Tor call on a private network.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::sniff::Sniffer;
use crate::stage::{AliceHop, CalleeReach, Stage, exe, read, say, stage, write_alice};

/// Place a PrivaSIP-2 call over Tor from Alice to Bob, on this machine.
///
/// Starts a private Tor network (Debian's tor), Proxy A (Alice's home
/// domain a.example, plain SIP towards Alice on the "LAN"), Proxy B (Bob's
/// domain b.example, reachable only as an onion service), Bob's user agent
/// (behind Tor, with its own onion service) and Alice's; registers both;
/// Alice calls Bob with PrivaSIP-2 (HPKE) on a fresh circuit per call.
/// Then it shows what each vantage point saw, audits a tcpdump capture of
/// the LAN hop and both proxies' logs for real IDs and display names
/// (see privasip audit), and cleans everything up. Under PrivaSIP any
/// finding fails the demo; with --mode plain they are the point.
///
/// Needs Debian's tor package, and tcpdump (run as root) for the LAN
/// capture: sudo apt-get install -y tor tcpdump
///
/// Examples:
///   privasip demo
///   privasip demo --mode plain           # the same call without PrivaSIP
///   privasip demo --alice-hop tor        # Alice reaches her proxy over Tor too
///   privasip demo --calls 5 --keep --dir /tmp/privasip-demo
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// How many calls Alice places.
    #[arg(long, default_value_t = 1)]
    calls: usize,
    /// Where to put everything (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Leave the network, proxies and Bob running (and the directory) for
    /// inspection; prints how to stop them.
    #[arg(long)]
    keep: bool,
    /// First port of the private network's range (BASE..BASE+100).
    #[arg(long, default_value_t = 18000, value_name = "BASE")]
    base_port: u16,
    /// Identity protection for Alice's calls.
    #[arg(long, default_value = "privasip-2", value_parser = ["plain", "privasip-1", "privasip-2"])]
    mode: String,
    /// How calls reach Bob behind Tor: at his own onion service, or over
    /// the Tor stream he registered on.
    #[arg(long, value_enum, default_value = "onion")]
    callee_reach: CalleeReach,
    /// How Alice reaches her home proxy: plain SIP on the LAN (the
    /// paper's set-up), or through Tor as well.
    #[arg(long, value_enum, default_value = "lan")]
    alice_hop: AliceHop,
}

/// Alice's display name (PrivaSIP removes it; plain SIP sends it).
const ALICE_NAME: &str = "Alice Liddell";

/// What must not show: both users' IDs and Alice's display name.
fn needles() -> privasip_audit::Needles {
    privasip_audit::Needles::new()
        .identity("alice")
        .identity("bob")
        .display_name(ALICE_NAME)
}

pub(crate) fn run(args: &Args) -> Result<()> {
    if args.calls == 0 {
        bail!("--calls must be at least 1");
    }
    let started = Instant::now();
    let (dir, tmp) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            (std::path::absolute(d)?, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("privasip-demo-")
                .tempdir()
                .context("cannot make a temporary directory")?;
            (t.path().to_owned(), Some(t))
        }
    };
    let d = dir.as_path();
    let Stage {
        mut cleanup,
        a_port,
        b_onion,
    } = stage(
        d,
        args.base_port,
        "hpke",
        &[],
        args.callee_reach,
        false,
        started,
    )?;
    write_alice(
        d,
        "alice",
        &args.mode,
        "hpke",
        args.base_port + 210,
        a_port,
        args.alice_hop,
    )?;
    // Over Tor, Alice's hop is Tor links like all the others: watch them
    // all (the network's ports).
    let (filter, watched) = match args.alice_hop {
        AliceHop::Lan => (format!("udp port {a_port}"), "Alice <-> Proxy A"),
        AliceHop::Tor => (
            format!("tcp portrange {}-{}", args.base_port, args.base_port + 99),
            "every link of the Tor network, Alice's among them",
        ),
    };
    let sniffer = match Sniffer::start(&d.join("lan.pcap"), &filter) {
        Ok(s) => {
            say(started, &format!("LAN observer: tcpdump on lo, {watched}"));
            Some(s)
        }
        Err(e) => {
            say(started, &format!("LAN observer: no capture: {e}"));
            None
        }
    };
    say(
        started,
        &format!(
            "Alice calls sip:bob@b.example, {} call(s), {}, {}a fresh circuit per call",
            args.calls,
            args.mode,
            if args.alice_hop == AliceHop::Tor {
                "through Tor to Proxy A, "
            } else {
                ""
            }
        ),
    );
    let calls = args.calls.to_string();
    let out = Command::new(exe()?)
        .args(["ua", "--config", "alice.toml", "--trace", "alice.trace"])
        .args(["call", "sip:bob@b.example", "--register", "--count", &calls])
        .current_dir(d)
        .output()
        .context("cannot run Alice")?;
    let alice_out = String::from_utf8_lossy(&out.stdout).into_owned();
    // Let the proxies write their last log lines and accounting.
    std::thread::sleep(Duration::from_millis(500));
    let captured = sniffer.map(Sniffer::stop).is_some();
    report(d, &alice_out, &b_onion, args.callee_reach, args.alice_hop)?;
    if !out.status.success() {
        bail!(
            "Alice's calls failed:\n{alice_out}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let leaks = audit(d, captured)?;
    if leaks > 0 && args.mode != "plain" {
        bail!(
            "privacy audit failed: {leaks} finding(s) under {}; see {}",
            args.mode,
            d.join("audit.txt").display()
        );
    }
    if args.keep {
        let children = std::mem::take(&mut cleanup.children);
        let net = cleanup.net.take();
        let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
        println!("\nstill running (--keep): everything is in {}", d.display());
        if let Some(net) = net {
            println!(
                "stop it with: kill {} && privasip testnet down --dir {}",
                pids.join(" "),
                net.display()
            );
        }
        if let Some(t) = tmp {
            let _ = t.keep();
        }
        return Ok(());
    }
    drop(cleanup);
    say(started, "done; every process stopped");
    Ok(())
}

fn first_line_with<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

fn shorten(line: &str) -> String {
    // Tokens are long; show their head.
    line.split(' ')
        .map(|w| {
            if let Some(i) = w.find("ps1") {
                let end = (i + 16).min(w.len());
                let tail = w
                    .get(i..)
                    .unwrap_or_default()
                    .find('@')
                    .map_or("", |at| w.get(i + at..).unwrap_or_default());
                format!(
                    "{}{}…{}",
                    w.get(..i).unwrap_or_default(),
                    w.get(i..end).unwrap_or_default(),
                    tail
                )
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn report(
    d: &Path,
    alice_out: &str,
    b_onion: &str,
    reach: CalleeReach,
    hop: AliceHop,
) -> Result<()> {
    let alice_trace = read(d, "alice.trace");
    let bob_out = read(d, "bob.out");
    println!("\n== the call, as Alice's user agent timed it");
    for l in alice_out.lines() {
        println!("  {l}");
    }
    println!("\n== the ladder");
    println!(
        "  Alice --{}--> Proxy A --Tor, onion {}…--> Proxy B --Tor, {}--> Bob",
        match hop {
            AliceHop::Lan => "UDP (LAN)",
            AliceHop::Tor => "Tor, A's onion, a circuit per call",
        },
        b_onion.get(..16.min(b_onion.len())).unwrap_or_default(),
        match reach {
            CalleeReach::Onion => "Bob's onion",
            CalleeReach::Registration => "the stream Bob registered on",
        }
    );
    println!(
        "  Bob --180/200--> B --> A --> Alice;  ACK and BYE follow the Record-Route the same way"
    );

    println!("\n== what each vantage point saw");
    let invite = alice_trace
        .split("=== sent")
        .find(|m| m.trim_start().starts_with("INVITE"))
        .unwrap_or("");
    match hop {
        AliceHop::Lan => println!(
            "  LAN observer (Alice <-> Proxy A, plain UDP): the INVITE as it crossed the LAN:"
        ),
        AliceHop::Tor => println!(
            "  LAN observer: only Tor cells; Proxy A, at the end of Alice's circuit, got this INVITE:"
        ),
    }
    for prefix in ["INVITE ", "From:", "To:", "Contact:", "Call-ID:"] {
        if let Some(l) = first_line_with(invite.trim_start(), prefix) {
            println!("    {}", shorten(l));
        }
    }
    println!("  Proxy A's accounting (the home proxy bills, so it learns the caller):");
    match privasip_store::Store::open(&d.join("proxy-a.db")).and_then(|mut s| s.calls()) {
        Ok(rows) => {
            for r in rows.iter().take(3) {
                println!("    caller {} -> callee {}", r.caller, shorten(&r.callee));
            }
        }
        Err(e) => println!("    (cannot read: {e})"),
    }
    println!("  A-B link: Tor cells between relays on 127.0.0.1; no exit, nothing in clear");
    let seen = bob_out
        .lines()
        .find(|l| l.contains("incoming from"))
        .map(shorten)
        .unwrap_or_else(|| "(no call arrived)".to_owned());
    println!("  Bob (the callee): {seen}");
    Ok(())
}

/// Audits each vantage point, prints a line per vantage point, writes
/// every finding to DIR/audit.txt, and returns how many there were.
fn audit(d: &Path, captured: bool) -> Result<usize> {
    use privasip_audit::Audit;
    println!(
        "\n== privacy audit (privasip audit: user IDs alice, bob; display name {ALICE_NAME:?})"
    );
    let mut all = Vec::new();
    let mut line = |what: &str, audit: &Audit| {
        let c = audit.covered();
        let n = audit.findings().len();
        let looked = if c.packets > 0 {
            format!("{} packets", c.packets)
        } else {
            format!("{} lines", c.lines)
        };
        match audit.findings().first() {
            None => println!("  {what} ({looked}): clean"),
            Some(f) => println!("  {what} ({looked}): {n} finding(s), first: {f}"),
        }
        all.extend(audit.findings().iter().map(ToString::to_string));
    };
    if captured {
        let mut a = Audit::new(needles());
        let bytes = std::fs::read(d.join("lan.pcap")).context("reading lan.pcap")?;
        a.scan_capture("lan.pcap", &bytes)?;
        line("LAN capture, tcpdump", &a);
    } else {
        println!("  LAN capture: none (see above)");
    }
    for (what, file) in [
        ("Proxy A's log", "proxy-a.log"),
        ("Proxy B's log", "proxy-b.log"),
    ] {
        let mut a = Audit::new(needles());
        a.scan_text(file, &read(d, file));
        line(what, &a);
    }
    // Bob may see his own ID; the caller's must not reach him.
    let mut a = Audit::new(
        privasip_audit::Needles::new()
            .identity("alice")
            .display_name(ALICE_NAME),
    );
    a.scan_text("bob.trace", &read(d, "bob.trace"));
    line("What Bob received, for Alice's ID", &a);
    let report: String = all.iter().map(|f| format!("{f}\n")).collect();
    std::fs::write(d.join("audit.txt"), report)?;
    Ok(all.len())
}
