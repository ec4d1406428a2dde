//! `privasip demo`: a whole PrivaSIP-over-Tor call on a private network.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Place a PrivaSIP-2 call over Tor from Alice to Bob, on this machine.
///
/// Starts a private Tor network (Debian's tor), Proxy A (Alice's home
/// domain a.example, plain SIP towards Alice on the "LAN"), Proxy B (Bob's
/// domain b.example, reachable only as an onion service), Bob's user agent
/// (behind Tor, with its own onion service) and Alice's; registers both;
/// Alice calls Bob with PrivaSIP-2 (HPKE) on a fresh circuit per call.
/// Then it shows what each vantage point saw and cleans everything up.
///
/// Needs Debian's tor package: sudo apt-get install -y tor
///
/// Examples:
///   privasip demo
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
}

/// Children killed (and the network stopped) when the demo ends.
struct Cleanup {
    children: Vec<Child>,
    net: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(net) = &self.net {
            let _ = privasip_testnet::down(net);
        }
    }
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the privasip binary")
}

fn say(started: Instant, msg: &str) {
    eprintln!("demo: [{:5.1}s] {msg}", started.elapsed().as_secs_f64());
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn spawn(args: &[&str], dir: &Path, log: &str) -> Result<Child> {
    let stdout = std::fs::File::create(dir.join(format!("{log}.out")))?;
    let stderr = std::fs::File::create(dir.join(format!("{log}.log")))?;
    Command::new(exe()?)
        .args(args)
        .current_dir(dir)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {log}"))
}

fn add_user(dir: &Path, config: &str, user: &str, password: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new(exe()?)
        .args(["user", "add", "--config", config, user])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{password}\n").as_bytes())?;
    if !child.wait()?.success() {
        bail!("privasip user add {user} failed");
    }
    Ok(())
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap_or_default()
}

/// Real identities and display names that must appear nowhere but where
/// PrivaSIP allows.
const SECRETS: [&str; 2] = ["alice", "bob"];

fn mentions(text: &str) -> Vec<&'static str> {
    SECRETS
        .iter()
        .copied()
        .filter(|s| text.to_ascii_lowercase().contains(s))
        .collect()
}

pub(crate) fn run(args: &Args) -> Result<()> {
    if args.calls == 0 {
        bail!("--calls must be at least 1");
    }
    let started = Instant::now();
    let (dir, _tmp) = match &args.dir {
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
    let net_dir = d.join("net");
    let mut cleanup = Cleanup {
        children: Vec::new(),
        net: Some(net_dir.clone()),
    };

    say(
        started,
        "starting a private Tor network (3 authorities, 5 relays, 2 clients)",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = privasip_testnet::Options {
        dir: net_dir.clone(),
        base_port: args.base_port,
        ..privasip_testnet::Options::new(net_dir.clone())
    };
    let progress = |m: &str| eprintln!("demo:   testnet {m}");
    rt.block_on(privasip_testnet::up(&opts, &progress))?;

    say(
        started,
        "keys for a.example and b.example (HPKE), users alice and bob",
    );
    for domain in ["a", "b"] {
        run_ok(
            Command::new(exe()?)
                .args(["keygen", "--scheme", "hpke", "--out"])
                .arg(d.join(format!("keys-{domain}"))),
            "privasip keygen",
        )?;
    }
    let tor = |client: &str, keys: &str, onion: u16| {
        format!(
            "[tor]\nbackend = \"arti\"\ntestnet = \"net\"\ntestnet_client = \"{client}\"\n\
             onion_port = {onion}\nkey_dir = \"{keys}\"\nisolation = \"per-call\"\n"
        )
    };
    let (a_port, b_port, alice_port) = (
        args.base_port + 200,
        args.base_port + 202,
        args.base_port + 210,
    );
    std::fs::write(
        d.join("proxy-b.toml"),
        format!(
            "[proxy]\ndomains = [\"b.example\"]\nsent_by = \"127.0.0.1:{b_port}\"\nauthenticate = true\n\
             [listen]\nudp = \"127.0.0.1:{b_port}\"\n[store]\npath = \"proxy-b.db\"\n\
             [privasip]\nkeys = [\"keys-b/hpke.key\"]\n{}",
            tor("b", "keys-b", 5060)
        ),
    )?;
    add_user(d, "proxy-b.toml", "bob", "zanzibar")?;

    say(started, "Proxy B: publishing its onion service");
    cleanup
        .children
        .push(spawn(&["proxy", "--config", "proxy-b.toml"], d, "proxy-b")?);
    wait_for("Proxy B's onion service", Duration::from_secs(150), || {
        d.join("keys-b/sip.onion").exists()
    })?;
    let b_onion = read(d, "keys-b/sip.onion").trim().to_owned();

    std::fs::write(
        d.join("bob.toml"),
        format!(
            "[ua]\nuser = \"bob\"\ndomain = \"b.example\"\npassword = \"zanzibar\"\n\
             local = \"127.0.0.1:{}\"\nproxy = \"tor:{b_onion}:5060\"\n\
             [privasip]\nmode = \"privasip-1\"\nhome_key = \"keys-b/hpke.pub\"\n{}",
            args.base_port + 211,
            tor("b", "keys-bob", 5060)
        ),
    )?;
    say(
        started,
        "Bob: behind Tor, with his own onion service, registering with B",
    );
    cleanup.children.push(spawn(
        &[
            "ua",
            "--config",
            "bob.toml",
            "--trace",
            "bob.trace",
            "listen",
        ],
        d,
        "bob",
    )?);
    wait_for("Bob's registration", Duration::from_secs(150), || {
        read(d, "bob.log").contains("registered for")
    })?;

    std::fs::write(
        d.join("proxy-a.toml"),
        format!(
            "[proxy]\ndomains = [\"a.example\"]\nsent_by = \"127.0.0.1:{a_port}\"\nauthenticate = true\n\
             [listen]\nudp = \"127.0.0.1:{a_port}\"\n[store]\npath = \"proxy-a.db\"\n\
             [privasip]\nkeys = [\"keys-a/hpke.key\"]\n{}\
             [tor.routes]\n\"b.example\" = \"{b_onion}:5060\"\n",
            tor("a", "keys-a", 5060)
        ),
    )?;
    add_user(d, "proxy-a.toml", "alice", "wonderland")?;
    say(
        started,
        "Proxy A: Alice's home proxy, plain SIP on the LAN side",
    );
    cleanup
        .children
        .push(spawn(&["proxy", "--config", "proxy-a.toml"], d, "proxy-a")?);
    wait_for("Proxy A", Duration::from_secs(150), || {
        d.join("keys-a/sip.onion").exists()
            && std::net::UdpSocket::bind(("127.0.0.1", a_port)).is_err()
    })?;

    std::fs::write(
        d.join("alice.toml"),
        format!(
            "[ua]\nuser = \"alice\"\ndomain = \"a.example\"\npassword = \"wonderland\"\n\
             local = \"127.0.0.1:{alice_port}\"\nproxy = \"udp:127.0.0.1:{a_port}\"\n\
             [privasip]\nmode = \"privasip-2\"\nhome_key = \"keys-a/hpke.pub\"\n\
             [privasip.callee_keys]\n\"b.example\" = \"keys-b/hpke.pub\"\n"
        ),
    )?;
    say(
        started,
        &format!(
            "Alice calls sip:bob@b.example, {} call(s), PrivaSIP-2, a fresh circuit per call",
            args.calls
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
    report(d, &alice_out, &b_onion)?;
    if !out.status.success() {
        bail!(
            "Alice's calls failed:\n{alice_out}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if args.keep {
        let children = std::mem::take(&mut cleanup.children);
        cleanup.net = None;
        let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
        println!("\nstill running (--keep): everything is in {}", d.display());
        println!(
            "stop it with: kill {} && privasip testnet down --dir {}",
            pids.join(" "),
            net_dir.display()
        );
        if let Some(t) = _tmp {
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
                let tail = w[i..].find('@').map_or("", |at| &w[i + at..]);
                format!("{}{}…{}", &w[..i], &w[i..end], tail)
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn report(d: &Path, alice_out: &str, b_onion: &str) -> Result<()> {
    let alice_trace = read(d, "alice.trace");
    let bob_trace = read(d, "bob.trace");
    let a_log = read(d, "proxy-a.log");
    let b_log = read(d, "proxy-b.log");
    let bob_out = read(d, "bob.out");
    println!("\n== the call, as Alice's user agent timed it");
    for l in alice_out.lines() {
        println!("  {l}");
    }
    println!("\n== the ladder");
    println!(
        "  Alice --UDP (LAN)--> Proxy A --Tor, onion {}…--> Proxy B --Tor, Bob's onion--> Bob",
        &b_onion[..16.min(b_onion.len())]
    );
    println!(
        "  Bob --180/200--> B --> A --> Alice;  ACK and BYE follow the Record-Route the same way"
    );

    println!("\n== what each vantage point saw");
    let invite = alice_trace
        .split("=== sent")
        .find(|m| m.trim_start().starts_with("INVITE"))
        .unwrap_or("");
    println!("  LAN observer (Alice <-> Proxy A, plain UDP): the INVITE as it crossed the LAN:");
    for prefix in ["INVITE ", "From:", "To:", "Contact:", "Call-ID:"] {
        if let Some(l) = first_line_with(invite.trim_start(), prefix) {
            println!("    {}", shorten(l));
        }
    }
    let leaks = mentions(&alice_trace);
    println!(
        "    real IDs on the LAN hop: {}",
        if leaks.is_empty() {
            "none".to_owned()
        } else {
            leaks.join(", ")
        }
    );
    println!(
        "  Proxy A's log ({} lines): real IDs: {}",
        a_log.lines().count(),
        or_none(&mentions(&a_log))
    );
    println!("  Proxy A's accounting (the home proxy bills, so it learns the caller):");
    match privasip_store::Store::open(&d.join("proxy-a.db")).and_then(|s| s.calls()) {
        Ok(rows) => {
            for r in rows.iter().take(3) {
                println!("    caller {} -> callee {}", r.caller, shorten(&r.callee));
            }
        }
        Err(e) => println!("    (cannot read: {e})"),
    }
    println!("  A-B link: Tor cells between relays on 127.0.0.1; no exit, nothing in clear");
    println!(
        "  Proxy B's log ({} lines): real IDs: {}",
        b_log.lines().count(),
        or_none(&mentions(&b_log))
    );
    let seen = bob_out
        .lines()
        .find(|l| l.contains("incoming from"))
        .map(shorten)
        .unwrap_or_else(|| "(no call arrived)".to_owned());
    println!("  Bob (the callee): {seen}");
    println!(
        "    Alice's real ID in what Bob received: {}",
        if bob_trace.to_ascii_lowercase().contains("alice") {
            "FOUND"
        } else {
            "none"
        }
    );
    Ok(())
}

fn or_none(v: &[&str]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}
