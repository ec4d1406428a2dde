//! `up`: keys, torrcs, a staged start, and a real onion round trip.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use privasip_tor::{
    CTor, CTorConfig, DirAuthority, Isolation, OnionSpec, PrivateNetwork, TorBackend,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::latency::{OrPorts, Plan, Profile};
use crate::process::nodes_dir;
use crate::torrc::{self, VOTING_INTERVAL, Wiring};
use crate::{Client, Scheduler, TestnetError};

/// How to build the network.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where everything lives (created if missing).
    pub dir: PathBuf,
    /// The first of the ports the network uses (base .. base+100). Keep
    /// it below 32768, clear of the kernel's ephemeral ports.
    pub base_port: u16,
    /// Relays besides the 3 authorities (at least 2: onion services need
    /// 5 relays in all).
    pub relays: usize,
    /// The packet scheduler.
    pub scheduler: Scheduler,
    /// Quick ACKs on the loopback routes while the network runs (root
    /// only; `down` restores them): removes the ~43 ms steps of tor's
    /// Nagle meeting delayed ACKs, for measurements.
    pub quickack: bool,
    /// The latency every link pays ([`Profile::None`]: loopback's).
    pub latency: Profile,
    /// The seed the links' delays are drawn from.
    pub seed: u64,
    /// With latency: the program that runs the forwarder as
    /// `PROGRAM testnet forward --dir DIR` (the privasip binary).
    pub forwarder: Option<PathBuf>,
}

impl Options {
    /// Defaults for `dir`: base port 15000, 5 relays, Vanilla.
    pub fn new(dir: PathBuf) -> Self {
        Options {
            dir,
            base_port: 15000,
            relays: 5,
            scheduler: Scheduler::Vanilla,
            quickack: false,
            latency: Profile::None,
            seed: 1,
            forwarder: None,
        }
    }
}

const AUTHORITIES: usize = 3;

/// With latency, a relay's real OR port is its advertised one plus this
/// (so at most this many relays and authorities).
const REAL_OR_OFFSET: u16 = 20;
const CLIENTS: [&str; 2] = ["a", "b"];

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
}

fn step(msg: impl Into<String>) -> TestnetError {
    TestnetError::Step(msg.into())
}

fn find_program(name: &'static str) -> Result<PathBuf, TestnetError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(TestnetError::Missing(name))
}

fn mkdir_private(p: &Path) -> Result<(), TestnetError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Launches the network and returns once an onion service on client `b`
/// is reachable from client `a`. `progress` hears each step. On failure
/// whatever was started is stopped again.
pub async fn up(opts: &Options, progress: &dyn Fn(&str)) -> Result<crate::Testnet, TestnetError> {
    let tor = find_program("tor")?;
    let gencert = find_program("tor-gencert")?;
    if opts.relays < 2 {
        return Err(step(
            "at least 2 relays are needed besides the 3 authorities",
        ));
    }
    if usize::from(opts.base_port) + 100 > 32768 {
        return Err(step("--base-port must leave base..base+100 below 32768"));
    }
    let dir = std::path::absolute(&opts.dir)?;
    if crate::status(&dir)?.iter().any(|n| n.pid.is_some()) {
        return Err(TestnetError::AlreadyRunning(dir.display().to_string()));
    }
    let started = Instant::now();
    if opts.quickack {
        std::fs::create_dir_all(&dir)?;
        // Before any node starts: a connection takes its route's settings
        // when it opens.
        crate::quickack::set(true)?;
        std::fs::write(dir.join(crate::quickack::MARKER), "")?;
        progress("quick ACKs on the loopback routes (restored by down)");
    }
    let r = launch(opts, &dir, &tor, &gencert, started, progress).await;
    if r.is_err() {
        let _ = crate::down(&dir);
    }
    r
}

async fn launch(
    opts: &Options,
    dir: &Path,
    tor: &Path,
    gencert: &Path,
    started: Instant,
    progress: &dyn Fn(&str),
) -> Result<crate::Testnet, TestnetError> {
    let say = |m: &str| progress(&format!("[{:5.1}s] {m}", started.elapsed().as_secs_f64()));
    let nodes = nodes_dir(dir);
    if nodes.exists() {
        std::fs::remove_dir_all(&nodes)?;
    }
    mkdir_private(&nodes)?;
    let empty = dir.join("empty.torrc");
    std::fs::write(&empty, "")?;

    let base = opts.base_port;
    let relay_names: Vec<String> = (0..AUTHORITIES)
        .map(|i| format!("auth{i}"))
        .chain((0..opts.relays).map(|i| format!("relay{i}")))
        .collect();

    say(&format!(
        "generating keys for {} authorities and {} relays",
        AUTHORITIES, opts.relays
    ));
    // Key generation is mostly waiting on tor-gencert: all at once.
    let keygen: Vec<_> = (0..AUTHORITIES)
        .map(|i| {
            let (g, t, e) = (gencert.to_owned(), tor.to_owned(), empty.clone());
            let d = nodes.join(format!("auth{i}"));
            tokio::spawn(async move { authority_keys(&g, &t, &e, d, i, base).await })
        })
        .collect();
    let mut auths = Vec::new();
    for k in keygen {
        auths.push(
            k.await
                .map_err(|e| step(format!("key generation: {e}")))??,
        );
    }
    let model = opts.latency.model();
    if model.is_some() && relay_names.len() > usize::from(REAL_OR_OFFSET) {
        return Err(step(format!(
            "with latency at most {REAL_OR_OFFSET} relays and authorities in all"
        )));
    }
    // Relay i's OR ports: loopback as it is, or with latency a real one
    // behind the forwarder on the advertised one.
    let wiring = |i: usize| Wiring {
        real_or_port: model.map(|_| base + REAL_OR_OFFSET + i as u16),
    };
    for (i, name) in relay_names.iter().enumerate().skip(AUTHORITIES) {
        let d = nodes.join(name);
        mkdir_private(&d)?;
        let or_port = base + i as u16;
        std::fs::write(
            d.join("torrc"),
            torrc::relay(&d, name, or_port, &auths, opts.scheduler, wiring(i)),
        )?;
    }
    for (i, (a, name)) in auths.iter().zip(&relay_names).enumerate() {
        let d = nodes.join(name);
        std::fs::write(
            d.join("torrc"),
            torrc::authority(&d, a, &auths, &relay_names, opts.scheduler, wiring(i)),
        )?;
    }
    if let Some(model) = model {
        let mut relays = BTreeMap::new();
        for (i, name) in relay_names.iter().enumerate() {
            let advertised = base + i as u16;
            relays.insert(
                name.clone(),
                OrPorts {
                    advertised,
                    real: advertised + REAL_OR_OFFSET,
                },
            );
        }
        let diallers = relay_names
            .iter()
            .cloned()
            .chain(CLIENTS.iter().map(|c| format!("client-{c}")))
            .collect();
        let plan = Plan::draw(opts.latency, model, opts.seed, relays, diallers);
        plan.save(dir)?;
        say(&format!(
            "latency {}: {} links, {:.1} ms one way on average (seed {}); starting the forwarder",
            opts.latency.name(),
            plan.links.len(),
            plan.mean_link_ms,
            opts.seed
        ));
        start_forwarder(opts, dir).await?;
    }

    say(&format!("starting {} relays", relay_names.len()));
    for name in &relay_names {
        start(tor, &empty, &nodes.join(name)).await?;
    }

    say("waiting for a consensus that lists every relay, fully flagged");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = consensus_relays(auths[0].dir_addr)
            .await
            .unwrap_or_default();
        if seen.flagged >= relay_names.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(TestnetError::Timeout(format!(
                "waiting for the consensus: {} of {} relays listed, {} with {}; {}",
                seen.listed,
                relay_names.len(),
                seen.flagged,
                NEEDED_FLAGS.join(" "),
                seen.lacking.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A client that bootstraps on the very first consensus can pick a
    // degenerate guard set; a few more seconds let the relays' descriptors
    // settle.
    tokio::time::sleep(Duration::from_secs(4)).await;

    say("starting the client daemons a and b");
    let mut clients = BTreeMap::new();
    for (i, name) in CLIENTS.iter().enumerate() {
        let d = nodes.join(format!("client-{name}"));
        mkdir_private(&d)?;
        let socks = base + 90 + 2 * i as u16;
        let control = socks + 1;
        std::fs::write(
            d.join("torrc"),
            torrc::client(
                &d,
                &format!("client{name}"),
                socks,
                control,
                &auths,
                opts.scheduler,
            ),
        )?;
        start(tor, &empty, &d).await?;
        clients.insert(
            (*name).to_owned(),
            Client {
                socks: localhost(socks),
                control: localhost(control),
            },
        );
    }
    for c in clients.values() {
        wait_bootstrapped(c.control).await.map_err(|e| match e {
            TestnetError::Timeout(m) => TestnetError::Timeout(m + &client_warnings(dir)),
            e => e,
        })?;
    }

    say("checking an onion service round trip (b hosts, a connects)");
    onion_round_trip(&clients, dir).await?;

    let mut names = relay_names;
    names.extend(CLIENTS.iter().map(|c| format!("client-{c}")));
    let net = crate::Testnet {
        nodes: names,
        scheduler: opts.scheduler,
        latency: opts.latency,
        clients,
        network: PrivateNetwork {
            authorities: auths,
            voting_interval_secs: VOTING_INTERVAL,
        },
    };
    let text = toml::to_string_pretty(&net).map_err(|e| step(e.to_string()))?;
    std::fs::write(
        dir.join(crate::STATE_FILE),
        format!("# Written by `privasip testnet up`; read by other privasip commands.\n{text}"),
    )?;
    say("ready");
    Ok(net)
}

async fn authority_keys(
    gencert: &Path,
    tor: &Path,
    empty: &Path,
    d: PathBuf,
    i: usize,
    base: u16,
) -> Result<DirAuthority, TestnetError> {
    let name = format!("auth{i}");
    let keys = d.join("keys");
    mkdir_private(&keys)?;
    let or_addr = localhost(base + i as u16);
    let dir_addr = localhost(base + 50 + i as u16);
    let mut child = Command::new(gencert)
        .current_dir(&keys)
        .args([
            "--create-identity-key",
            "--passphrase-fd",
            "0",
            "-i",
            "authority_identity_key",
            "-s",
            "authority_signing_key",
            "-c",
            "authority_certificate",
            "-m",
            "12",
            "-a",
            &dir_addr.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(b"\n").await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(step(format!(
            "tor-gencert failed for {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let cert = std::fs::read_to_string(keys.join("authority_certificate"))?;
    let v3ident = cert
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .ok_or_else(|| step(format!("{name}: certificate without a fingerprint")))?
        .trim()
        .to_owned();
    let out = Command::new(tor)
        .args(["--list-fingerprint", "--hush", "-f"])
        .arg(empty)
        .arg("--defaults-torrc")
        .arg(empty)
        .arg("--DataDirectory")
        .arg(&d)
        .args(["--ORPort", "1", "--Nickname", &name])
        .output()
        .await?;
    if !out.status.success() {
        return Err(step(format!(
            "tor --list-fingerprint failed for {name}: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    let second_word = |file: &str| -> Result<String, TestnetError> {
        let text = std::fs::read_to_string(d.join(file))?;
        text.split_whitespace()
            .nth(1)
            .map(str::to_owned)
            .ok_or_else(|| step(format!("{name}: {file} is malformed")))
    };
    Ok(DirAuthority {
        nickname: name.clone(),
        v3ident,
        fingerprint: second_word("fingerprint")?,
        ed25519: second_word("fingerprint-ed25519")?,
        or_addr,
        dir_addr,
    })
}

/// Starts one node as a child in its own process group, so it outlives
/// this process and a Ctrl-C in the terminal that ran `up`. tor is not
/// asked to daemonise: its fork after start-up left a hung process (deaf
/// to SIGTERM, holding the ports) every few networks here.
async fn start(tor: &Path, empty: &Path, d: &Path) -> Result<(), TestnetError> {
    let mut child = Command::new(tor)
        .arg("-f")
        .arg(d.join("torrc"))
        .arg("--defaults-torrc")
        .arg(empty)
        .arg("--quiet")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(d.join("notice.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(step(format!(
                "tor failed to start in {} ({status}):\n{}",
                d.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        if std::fs::metadata(d.join("tor.pid")).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.start_kill();
            return Err(TestnetError::Timeout(format!(
                "waiting for tor's pid file in {}",
                d.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts node `name` of the running network in `dir` again (after
/// [`crate::kill`]), with its torrc, keys and ports as before; a client
/// daemon is waited for until it has bootstrapped. For fault tests: a
/// relay, an authority or a client daemon coming back.
pub async fn restart(dir: &Path, name: &str) -> Result<(), TestnetError> {
    let net = crate::Testnet::load(dir)?;
    if !net.nodes.iter().any(|n| n == name) {
        return Err(step(format!(
            "no node {name:?} in this network (it has {})",
            net.nodes.join(", ")
        )));
    }
    let node = nodes_dir(dir).join(name);
    if crate::process::live_pid(&node).is_some() {
        return Err(step(format!("{name} is running already")));
    }
    let tor = find_program("tor")?;
    let empty = dir.join("empty.torrc");
    // A pid file left by a killed tor would be taken for the new one's.
    let _ = std::fs::remove_file(node.join("tor.pid"));
    start(&tor, &empty, &node).await?;
    if let Some(client) = name
        .strip_prefix("client-")
        .and_then(|c| net.clients.get(c))
    {
        wait_bootstrapped(client.control).await?;
    }
    Ok(())
}

/// Starts `PROGRAM testnet forward --dir DIR` in the background and
/// waits until it listens (its pid file appears).
async fn start_forwarder(opts: &Options, dir: &Path) -> Result<(), TestnetError> {
    let program = opts
        .forwarder
        .as_ref()
        .ok_or_else(|| step("latency needs the forwarder's program (Options::forwarder)"))?;
    let pid_file = dir.join(crate::forward::PID_FILE);
    let _ = std::fs::remove_file(&pid_file);
    let mut child = Command::new(program)
        .args(["testnet", "forward", "--dir"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("forwarder.log"))?)
        .process_group(0)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("forwarder.log")).unwrap_or_default();
            return Err(step(format!(
                "the latency forwarder stopped ({status}): {log}"
            )));
        }
        if pid_file.exists() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.start_kill();
            return Err(TestnetError::Timeout("for the latency forwarder".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The flags every relay needs before clients start: without Running and
/// Valid a client cannot build circuits, without HSDir an onion service
/// has nowhere to publish, without Guard/Stable/Fast path selection fails.
const NEEDED_FLAGS: [&str; 6] = ["Fast", "Guard", "HSDir", "Running", "Stable", "Valid"];

/// What the authority's current consensus lists.
#[derive(Default)]
struct ConsensusSeen {
    listed: usize,
    flagged: usize,
    /// "relay3 lacks HSDir Running", for the error message.
    lacking: Vec<String>,
}

async fn consensus_relays(dir_addr: SocketAddr) -> std::io::Result<ConsensusSeen> {
    let mut s = tokio::net::TcpStream::connect(dir_addr).await?;
    s.write_all(b"GET /tor/status-vote/current/consensus-microdesc HTTP/1.0\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut body))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let text = String::from_utf8_lossy(&body);
    let mut seen = ConsensusSeen::default();
    if !text.starts_with("HTTP/1.0 200") {
        return Ok(seen);
    }
    let mut nickname = "";
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("r ") {
            seen.listed += 1;
            nickname = r.split_whitespace().next().unwrap_or("");
        } else if let Some(flags) = line.strip_prefix("s ") {
            let flags: Vec<&str> = flags.split_whitespace().collect();
            let missing: Vec<&str> = NEEDED_FLAGS
                .into_iter()
                .filter(|f| !flags.contains(f))
                .collect();
            if missing.is_empty() {
                seen.flagged += 1;
            } else {
                seen.lacking
                    .push(format!("{nickname} lacks {}", missing.join(" ")));
            }
        }
    }
    Ok(seen)
}

/// The last warnings of every client daemon, for an error message.
fn client_warnings(dir: &Path) -> String {
    let mut out = String::new();
    for name in CLIENTS {
        let log = nodes_dir(dir)
            .join(format!("client-{name}"))
            .join("notice.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let warns: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("[warn]") || l.contains("[err]"))
            .collect();
        for w in warns.iter().rev().take(4).rev() {
            out.push_str(&format!("\n  client {name}: {w}"));
        }
    }
    out
}

async fn wait_bootstrapped(control: SocketAddr) -> Result<(), TestnetError> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    loop {
        if let Ok(mut c) = privasip_tor::ControlConn::connect(control).await
            && let Ok(r) = c.command("GETINFO status/bootstrap-phase").await
        {
            last = r.lines.join(" ");
            if last.contains("PROGRESS=100") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(TestnetError::Timeout(format!(
                "waiting for a client to bootstrap ({last})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Hosts an echo onion service on `b` and talks to it through `a`.
async fn onion_round_trip(
    clients: &BTreeMap<String, Client>,
    dir: &Path,
) -> Result<(), TestnetError> {
    let backend = |n: &str| {
        clients.get(n).map(|c| {
            CTor::new(CTorConfig {
                socks: c.socks,
                control: c.control,
                key_dir: dir.join("keys"),
            })
        })
    };
    let (Some(a), Some(b)) = (backend("a"), backend("b")) else {
        return Err(step("client daemons missing"));
    };
    let mut service = b
        .host_onion(OnionSpec {
            nickname: "testnet-check".into(),
            port: 7,
            pow: true,
        })
        .await
        .map_err(|e| {
            step(format!(
                "hosting the check onion service: {e}{}",
                client_warnings(dir)
            ))
        })?;
    let onion = service.address.expose().clone();
    tokio::spawn(async move {
        while let Some(mut s) = service.incoming.recv().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf).await {
                    let _ = s.write_all(&buf[..n]).await;
                }
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last: String;
    loop {
        let attempt = async {
            let mut s = a
                .connect(&onion, 7, Isolation::Fresh)
                .await
                .map_err(|e| e.to_string())?;
            s.write_all(b"ping").await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            if &buf == b"ping" {
                Ok(())
            } else {
                Err("echo mismatch".to_owned())
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = "no answer in 30 s".into(),
        }
        if Instant::now() > deadline {
            return Err(TestnetError::Timeout(format!(
                "reaching the check onion service ({last}){}",
                client_warnings(dir)
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
