//! The demo: a whole PrivaSIP-over-Tor call on a private network, every
//! vantage point audited.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::sniff::Sniffer;
use crate::stage::{
    ALICE_IP, AliceHop, BOB_IP, CalleeReach, Options, PROXY_A_IP, PROXY_B_IP, Stage, exe, read,
    say, stage, write_alice,
};

/// Alice's display name (PrivaSIP removes it; plain SIP sends it).
const ALICE_NAME: &str = "Alice Liddell";

/// What `privasip demo` was asked for.
#[derive(Clone, Debug)]
pub struct Demo {
    /// How many calls Alice places.
    pub calls: usize,
    /// Where to put everything (default: a new temporary directory).
    pub dir: Option<PathBuf>,
    /// Leave everything running for inspection.
    pub keep: bool,
    /// First port of the private network's range.
    pub base_port: u16,
    /// `plain`, `privasip-1` or `privasip-2`.
    pub mode: String,
    /// How calls reach Bob.
    pub callee_reach: CalleeReach,
    /// How Alice reaches her home proxy.
    pub alice_hop: AliceHop,
    /// The latency the network's links pay.
    pub latency: privasip_testnet::Profile,
    /// The seed of the links' delays.
    pub seed: u64,
}

/// Runs the demo, printing what it does and what each party saw.
pub fn run(args: &Demo) -> Result<()> {
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
        Options {
            quickack: false,
            // Plain SIP, as the paper's proxies forwarded it: addresses
            // and all, so that the audit shows what hiding takes away.
            hiding: if args.mode == "plain" { "off" } else { "tor" },
            latency: args.latency,
            seed: args.seed,
        },
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
    let handle_answered = call_old_handle(d)?;
    let leaks = audit(d, captured, args.alice_hop, &b_onion)? + usize::from(handle_answered);
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

/// A Contact line with its (long) user part cut short.
fn shorten_handle(line: &str) -> String {
    match (line.find("sip:"), line.find('@')) {
        (Some(a), Some(b)) if b > a + 16 => format!(
            "{}…{}",
            line.get(..a + 16).unwrap_or_default(),
            line.get(b..).unwrap_or_default()
        ),
        _ => line.to_owned(),
    }
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
                println!(
                    "    caller {} -> callee {}",
                    r.caller.expose(),
                    shorten(r.callee.expose())
                );
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
    // What Bob could call back, and what links nothing: a handle.
    let bob_trace = read(d, "bob.trace");
    let contact = bob_trace
        .split("=== ")
        .find(|m| m.starts_with("received\nINVITE "))
        .and_then(|m| m.lines().find(|l| l.starts_with("Contact:")))
        .map(|l| shorten_handle(l.trim()));
    if let Some(c) = contact {
        println!("    Alice's Contact as Bob got it: {c}");
    }
    Ok(())
}

/// Calls Bob's Contact from Alice's last call (a handle at a proxy's
/// onion) as a new call, from outside that dialog: it must be refused.
/// Returns whether it was answered (a finding).
fn call_old_handle(d: &Path) -> Result<bool> {
    let Some(handle) = last_contact(&read(d, "alice.trace")) else {
        println!("\n== Bob's Contact, called from outside its dialog: no Contact seen");
        return Ok(true);
    };
    let out = Command::new(exe()?)
        .args(["ua", "--config", "alice.toml", "call", &handle, "--json"])
        .current_dir(d)
        .output()
        .context("cannot run Alice")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let status = stdout
        .split("\"status\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .unwrap_or("null")
        .to_owned();
    let answered = stdout.contains("\"outcome\":\"answered");
    println!(
        "\n== Bob's Contact from the last call, called from outside that call: {}",
        if answered {
            format!("ANSWERED ({status}): a handle that outlives its dialog")
        } else {
            format!("refused ({status})")
        }
    );
    Ok(answered)
}

/// The URI of the Contact in the last 200 to an INVITE a trace received.
fn last_contact(trace: &str) -> Option<String> {
    trace
        .split("=== ")
        .filter(|m| m.starts_with("received") && m.contains("SIP/2.0 200") && m.contains(" INVITE"))
        .filter_map(|m| {
            m.lines()
                .find(|l| l.starts_with("Contact:") || l.starts_with("m:"))
                .and_then(|l| {
                    let (a, b) = (l.find('<')?, l.find('>')?);
                    l.get(a + 1..b).map(str::to_owned)
                })
        })
        .last()
}

/// A trace with what its party sent blanked out (line numbers kept): a
/// party's audit is about what it received.
fn received_only(trace: &str) -> String {
    let mut keep = false;
    let mut out = String::with_capacity(trace.len());
    for line in trace.lines() {
        if let Some(dir) = line.strip_prefix("=== ") {
            keep = dir.starts_with("received");
        }
        if keep {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// What must not show, per vantage point.
struct Watch {
    /// Alice's side: her address, her proxy's, her domain, A's onion.
    alice_side: privasip_audit::Needles,
    /// Bob's side: his address, his proxy's, his own onion.
    bob_side: privasip_audit::Needles,
}

fn watch(d: &Path) -> Watch {
    let bob_onion = read(d, "keys-bob/sip.onion").trim().to_owned();
    let a_onion = read(d, "keys-a/sip.onion").trim().to_owned();
    Watch {
        alice_side: privasip_audit::Needles::new()
            .identity("alice")
            .display_name(ALICE_NAME)
            .address(ALICE_IP)
            .address(PROXY_A_IP)
            .domain("a.example")
            .onion(&a_onion),
        bob_side: privasip_audit::Needles::new()
            .identity("bob")
            .address(BOB_IP)
            .address(PROXY_B_IP)
            .onion(&bob_onion),
    }
}

/// Audits each vantage point, prints a line per vantage point, writes
/// every finding to DIR/audit.txt, and returns how many there were.
fn audit(d: &Path, captured: bool, hop: AliceHop, b_onion: &str) -> Result<usize> {
    use privasip_audit::Audit;
    println!(
        "\n== privacy audit (privasip audit: user IDs alice, bob; display name {ALICE_NAME:?}; \
         each party's address, onion and domain where another party could see it; values \
         repeated across calls)"
    );
    let w = watch(d);
    let a_onion = read(d, "keys-a/sip.onion").trim().to_owned();
    let b_host = b_onion.split(':').next().unwrap_or_default().to_owned();
    let mut all = Vec::new();
    let mut line = |what: &str, audit: &Audit, extra: Vec<privasip_audit::Finding>| {
        let c = audit.covered();
        let every: Vec<&privasip_audit::Finding> = audit.findings().iter().chain(&extra).collect();
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for f in &every {
            let k = f.kind.to_string();
            match kinds.iter_mut().find(|(n, _)| *n == k) {
                Some((_, c)) => *c += 1,
                None => kinds.push((k, 1)),
            }
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, c)| format!("{k} {c}")).collect();
        let findings: Vec<String> = every.iter().map(ToString::to_string).collect();
        let looked = if c.packets > 0 {
            format!("{} packets", c.packets)
        } else {
            format!("{} lines", c.lines)
        };
        match findings.first() {
            None => println!("  {what} ({looked}): clean"),
            Some(f) => println!(
                "  {what} ({looked}): {} finding(s) ({}), first: {f}",
                findings.len(),
                kinds.join(", ")
            ),
        }
        all.extend(findings);
    };
    if captured {
        // The LAN observer must not see Bob's side, nor IDs.
        let mut a = Audit::new(
            w.bob_side
                .clone()
                .identity("alice")
                .display_name(ALICE_NAME),
        );
        let bytes = std::fs::read(d.join("lan.pcap")).context("reading lan.pcap")?;
        a.scan_capture("lan.pcap", &bytes)?;
        // Every message Alice sent or received crossed the LAN hop: fewer
        // packets than that is a truncated capture, which proves nothing.
        let messages = read(d, "alice.trace").matches("=== ").count() as u64;
        let payloads = a.covered().payloads;
        let short = match hop {
            AliceHop::Lan => payloads < messages,
            AliceHop::Tor => payloads == 0,
        };
        if short {
            bail!(
                "the LAN capture is truncated: {payloads} packets with a payload for {messages} \
                 messages; it proves nothing"
            );
        }
        line("LAN capture, tcpdump", &a, Vec::new());
    } else {
        println!("  LAN capture: none (see above)");
    }
    for (what, file, needles) in [
        (
            "Proxy A's log",
            "proxy-a.log",
            privasip_audit::Needles::new()
                .identity("alice")
                .identity("bob")
                .display_name(ALICE_NAME)
                .address(BOB_IP)
                .address(ALICE_IP),
        ),
        (
            "Proxy B's log",
            "proxy-b.log",
            privasip_audit::Needles::new()
                .identity("alice")
                .identity("bob")
                .display_name(ALICE_NAME)
                .address(ALICE_IP)
                .address(PROXY_A_IP)
                .address(BOB_IP),
        ),
    ] {
        let mut a = Audit::new(needles);
        a.scan_text(file, &read(d, file));
        line(what, &a, Vec::new());
    }
    // Bob may see his own side; Alice's must not reach him, and nothing
    // he got may be the same in two calls.
    let bob_trace = received_only(&read(d, "bob.trace"));
    let mut a = Audit::new(w.alice_side.clone());
    a.scan_text("bob.trace", &bob_trace);
    let bob_own = read(d, "keys-bob/sip.onion").trim().to_owned();
    let linked = privasip_audit::linking_values(
        "bob.trace",
        &read(d, "bob.trace"),
        &[&b_host, &bob_own, privasip_proxy::ANONYMOUS_HOST],
    );
    line("What Bob received, for Alice's side", &a, linked);
    // And the other way: nothing of Bob's side reaches Alice.
    let alice_trace = received_only(&read(d, "alice.trace"));
    let mut a = Audit::new(w.bob_side.clone());
    a.scan_text("alice.trace", &alice_trace);
    let linked = privasip_audit::linking_values(
        "alice.trace",
        &read(d, "alice.trace"),
        &[&b_host, &a_onion, privasip_proxy::ANONYMOUS_HOST],
    );
    line("What Alice received, for Bob's side", &a, linked);
    let report: String = all.iter().map(|f| format!("{f}\n")).collect();
    std::fs::write(d.join("audit.txt"), report)?;
    Ok(all.len())
}
