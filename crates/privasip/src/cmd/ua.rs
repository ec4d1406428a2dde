//! `privasip ua`: the user agent (the paper's Alice and Bob).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use privasip_digest::{Algorithm, Ha1};
use privasip_tor::{Isolation, TorStream};
use privasip_ua::{Answer, CallId, Home, Privacy, Ua, UaConfig, UaEvent};
use rand_core::OsRng;
use serde::Deserialize;
use tokio::net::{TcpStream, UdpSocket};
use zeroize::Zeroizing;

use crate::aes_counter::CounterFile;
use crate::config_relative;
use crate::keyfile::read_public;
use crate::ua_wire::{Incoming, Link, Opening, PROXY_STREAM, Reader, Streams, Wire, Writer};

/// Run a SIP user agent: register, call, answer.
///
/// Signalling only (no media). Plain SIP or PrivaSIP-1/-2 as the
/// configuration says; over UDP or TCP to the home proxy.
///
/// Examples:
///   privasip ua --config alice.toml register
///   privasip ua --config alice.toml call sip:bob@b.example --count 10 --interval 1
///   privasip ua --config bob.toml listen
///
/// `call` prints one line per call (times from INVITE sent); `--json`
/// prints one JSON object per call instead. Exit status: 0 if every call
/// was answered, 1 otherwise.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The user agent's TOML configuration.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// Append every message sent and received to FILE, as on the wire
    /// (what an observer of this hop sees, before Tor if any). It holds
    /// Digest responses: a new FILE is created readable by you alone.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,

    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Register once and exit.
    Register,
    /// Call a SIP URI, hang up after --hold seconds.
    Call {
        /// Whom to call, e.g. sip:bob@b.example.
        target: String,
        /// How many calls, one after the other.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Seconds between the end of one call and the next.
        #[arg(long, default_value_t = 0.0)]
        interval: f64,
        /// Seconds to stay in an answered call before BYE.
        #[arg(long, default_value_t = 0.0)]
        hold: f64,
        /// Hang up (CANCEL) a call not answered after this many seconds;
        /// it then ends with 487.
        #[arg(long, value_name = "SECONDS", value_parser = seconds)]
        cancel_after: Option<f64>,
        /// Register before calling.
        #[arg(long)]
        register: bool,
        /// One JSON object per call on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Register and answer calls until Ctrl-C (or --for seconds).
    Listen {
        /// Stop after this many seconds.
        #[arg(long = "for", value_name = "SECONDS")]
        duration: Option<f64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    ua: UaSection,
    #[serde(default)]
    privasip: PrivaSipSection,
    /// Reach the proxy through Tor (`proxy = "tor:ONION:PORT"`), and host
    /// our own onion service for incoming calls (`onion_port`).
    tor: Option<crate::tor::TorSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UaSection {
    user: String,
    /// A display name for From; sent in plain mode only (PrivaSIP removes
    /// display names).
    display_name: Option<String>,
    domain: String,
    /// The Digest password (keep the file private), or use the
    /// PRIVASIP_PASSWORD environment variable.
    password: Option<String>,
    /// Local address to bind (also our Via/Contact host:port; behind
    /// Tor our onion address replaces it).
    local: SocketAddr,
    /// The home proxy: "udp:IP:PORT", "tcp:IP:PORT" or, with [tor],
    /// "tor:ONION:PORT".
    proxy: String,
    #[serde(default = "default_expires")]
    expires: u32,
    /// Incoming calls: "accept", "busy" or "decline".
    #[serde(default = "accept")]
    answer: String,
    /// Incoming calls: ring this long before answering.
    #[serde(default)]
    ring_ms: u64,
}

/// A duration in seconds: finite and not negative.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

fn default_expires() -> u32 {
    3600
}
fn accept() -> String {
    "accept".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivaSipSection {
    /// "plain", "privasip-1" or "privasip-2".
    #[serde(default)]
    mode: Option<String>,
    /// The home proxy's public key file (relative to this file).
    home_key: Option<PathBuf>,
    /// PrivaSIP-AES instead of `home_key`: our token under a key from our
    /// password, which the home proxy (`[privasip] aes = true`) shares.
    #[serde(default)]
    aes: bool,
    /// Where the AES token counter is kept (relative to this file;
    /// default: this file's name + `.aes-counter`).
    aes_counter: Option<PathBuf>,
    /// PrivaSIP-2: callee domain -> its public key file.
    #[serde(default)]
    callee_keys: HashMap<String, PathBuf>,
}

/// Where the proxy is.
enum ProxyAt {
    Udp(SocketAddr),
    Tcp(SocketAddr),
    Tor(String, u16),
}

/// A configuration, read.
struct Loaded {
    cfg: UaConfig,
    aes: Option<CounterFile>,
    local: SocketAddr,
    proxy: ProxyAt,
    tor: Option<crate::tor::TorSection>,
}

fn load(path: &Path) -> Result<Loaded> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let cfg: Config = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid user agent configuration", path.display()))?;
    if cfg.ua.password.is_some() {
        warn_if_readable(path);
    }
    let password = match (&cfg.ua.password, std::env::var("PRIVASIP_PASSWORD")) {
        (_, Ok(p)) => p,
        (Some(p), Err(_)) => p.clone(),
        (None, Err(_)) => bail!("[ua] password is missing (or set PRIVASIP_PASSWORD)"),
    };
    let proxy = match cfg.ua.proxy.split_once(':') {
        Some(("udp", a)) => ProxyAt::Udp(a.parse().context("[ua] proxy: not IP:PORT")?),
        Some(("tcp", a)) => ProxyAt::Tcp(a.parse().context("[ua] proxy: not IP:PORT")?),
        Some(("tor", a)) => {
            let (h, p) = a.rsplit_once(':').context("[ua] proxy: tor:HOST:PORT")?;
            if cfg.tor.is_none() {
                bail!("[ua] proxy over tor needs a [tor] section");
            }
            ProxyAt::Tor(h.to_owned(), p.parse().context("[ua] proxy: bad port")?)
        }
        _ => bail!("[ua] proxy must be \"udp:IP:PORT\", \"tcp:IP:PORT\" or \"tor:ONION:PORT\""),
    };
    let reliable = !matches!(proxy, ProxyAt::Udp(_));
    let answer = match cfg.ua.answer.as_str() {
        "accept" => Answer::Accept,
        "busy" => Answer::Busy,
        "decline" => Answer::Decline,
        other => bail!("[ua] answer {other:?}: use accept, busy or decline"),
    };
    let mode = cfg.privasip.mode.as_deref().unwrap_or("plain");
    let mut aes = None;
    let privacy = match mode {
        "plain" => Privacy::Plain,
        "privasip-1" | "privasip-2" => {
            let home = match (&cfg.privasip.home_key, cfg.privasip.aes) {
                (Some(key), false) => Home::Key(read_public(&config_relative(path, key))?),
                (None, true) => {
                    let counter = match &cfg.privasip.aes_counter {
                        Some(p) => config_relative(path, p),
                        None => {
                            let mut name = path.file_name().unwrap_or_default().to_owned();
                            name.push(".aes-counter");
                            path.with_file_name(name)
                        }
                    };
                    let secret = Ha1::from_password(
                        Algorithm::Sha256,
                        &cfg.ua.user,
                        &cfg.ua.domain,
                        &password,
                    );
                    let (file, next_counter) =
                        CounterFile::open(&counter, secret.expose_hex().as_bytes())?;
                    aes = Some(file);
                    Home::Aes { next_counter }
                }
                (Some(_), true) => bail!("[privasip] set home_key or aes = true, not both"),
                (None, false) => {
                    bail!(
                        "[privasip] PrivaSIP needs home_key (the home proxy's public key) or aes = true"
                    )
                }
            };
            let mut callee_keys = HashMap::new();
            if mode == "privasip-2" {
                for (domain, key) in &cfg.privasip.callee_keys {
                    callee_keys.insert(
                        domain.to_ascii_lowercase(),
                        read_public(&config_relative(path, key))?,
                    );
                }
            }
            Privacy::PrivaSip { home, callee_keys }
        }
        other => bail!("[privasip] mode {other:?}: use plain, privasip-1 or privasip-2"),
    };
    Ok(Loaded {
        cfg: UaConfig {
            user: cfg.ua.user,
            display_name: cfg.ua.display_name,
            domain: cfg.ua.domain,
            password: Zeroizing::new(password),
            local: cfg.ua.local.to_string(),
            reliable,
            outbound: false,
            expires: cfg.ua.expires,
            privacy,
            answer,
            ring_time: Duration::from_millis(cfg.ua.ring_ms),
        },
        aes,
        local: cfg.ua.local,
        proxy,
        tor: cfg.tor,
    })
}

/// A password in a file others can read is not a secret: say so (as ssh
/// does for keys), but go on.
fn warn_if_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: {} holds a password and others can read it (mode {mode:o}): \
                     chmod 600 it, or set PRIVASIP_PASSWORD instead",
                    path.display()
                );
            }
        }
    }
}

struct Agent {
    ua: Ua<Link>,
    /// PrivaSIP-AES: the counter on disk, saved before a token leaves.
    aes: Option<CounterFile>,
    /// Whether we registered (and so register again after reconnecting).
    registered: bool,
    wire: Wire,
    trace: Option<std::fs::File>,
}

impl Agent {
    fn trace(&mut self, dir: &str, bytes: &[u8]) {
        use std::io::Write;
        if let Some(f) = self.trace.as_mut() {
            let _ = writeln!(f, "=== {dir}");
            let _ = f.write_all(bytes);
            let _ = writeln!(f);
        }
    }
}

impl Agent {
    async fn flush(&mut self) -> Result<()> {
        if let (Some(file), Some(next)) = (self.aes.as_mut(), self.ua.aes_next_counter()) {
            file.save(next)?;
        }
        while let Some(t) = self.ua.poll_transmit() {
            self.trace("sent", &t.bytes);
            self.wire.send(t.to, t.bytes).await?;
        }
        Ok(())
    }

    /// Runs until `until` returns true for an event, or `deadline`.
    async fn run_until(
        &mut self,
        deadline: Option<Instant>,
        mut on_event: impl FnMut(Instant, UaEvent) -> bool,
    ) -> Result<bool> {
        loop {
            self.flush().await?;
            while let Some(ev) = self.ua.poll_event() {
                if on_event(Instant::now(), ev) {
                    self.flush().await?;
                    return Ok(true);
                }
            }
            let next = [self.ua.poll_timeout(), deadline]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.wire.recv() => { match r? {
                    Incoming::Message(bytes, from) => {
                        self.trace("received", &bytes);
                        self.ua.receive(Instant::now(), &bytes, from, &mut OsRng);
                    }
                    // The proxy lost our flow with the old connection (and
                    // maybe everything else, if it restarted): register
                    // again now rather than at the next refresh.
                    Incoming::Reconnected if self.registered => {
                        self.ua.register(Instant::now(), &mut OsRng)?;
                    }
                    Incoming::Reconnected => {}
                } }
                () = sleep => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        return Ok(false);
                    }
                    self.ua.handle_timeout(now, &mut OsRng);
                }
                _ = tokio::signal::ctrl_c() => return Ok(false),
            }
        }
    }

    async fn register(&mut self) -> Result<u32> {
        self.ua.register(Instant::now(), &mut OsRng)?;
        self.registered = true;
        let mut result = None;
        self.run_until(
            Some(Instant::now() + Duration::from_secs(40)),
            |_, ev| match ev {
                UaEvent::Registered { expires } => {
                    result = Some(Ok(expires));
                    true
                }
                UaEvent::RegistrationFailed { status } => {
                    result = Some(Err(status));
                    true
                }
                _ => false,
            },
        )
        .await?;
        match result {
            Some(Ok(e)) => Ok(e),
            Some(Err(status)) => bail!("registration refused: {status}"),
            None => bail!("no answer to REGISTER"),
        }
    }

    /// Removes our registration (if we made one), waiting a little for
    /// the registrar's answer: a user agent going away says so.
    async fn unregister(&mut self) -> Result<()> {
        if !self.registered {
            return Ok(());
        }
        self.registered = false;
        self.ua.unregister(Instant::now(), &mut OsRng)?;
        let done = self
            .run_until(Some(Instant::now() + Duration::from_secs(5)), |_, ev| {
                matches!(
                    ev,
                    UaEvent::Unregistered | UaEvent::RegistrationFailed { .. }
                )
            })
            .await?;
        if !done {
            eprintln!("the registrar did not confirm the unregistration");
        }
        Ok(())
    }
}

/// Accepts TCP connections on `local` (our Contact's address), handing
/// each over as a stream.
async fn listen_tcp(local: SocketAddr) -> Result<tokio::sync::mpsc::Receiver<TorStream>> {
    let listener = tokio::net::TcpListener::bind(local)
        .await
        .with_context(|| format!("cannot listen on {local} (TCP)"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            if tx.send(TorStream::new(r, w)).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// One call's record.
#[derive(Default)]
struct Record {
    trying_ms: Option<f64>,
    ringing_ms: Option<f64>,
    answered_ms: Option<f64>,
    status: Option<u16>,
    ended: bool,
    /// We hung up before an answer (CANCEL).
    cancelled: bool,
}

fn ms(since: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(since).as_secs_f64() * 1000.0
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let Loaded {
        mut cfg,
        aes,
        local,
        proxy,
        tor,
    } = load(&args.config)?;
    if tor.is_some() {
        crate::init_logs();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let config_path = args.config.clone();
    rt.block_on(async move {
        let (wire, peer) = match proxy {
            ProxyAt::Udp(addr) => (
                Wire::Udp(
                    UdpSocket::bind(local)
                        .await
                        .with_context(|| format!("cannot bind {local}"))?,
                ),
                Link::Addr(addr),
            ),
            ProxyAt::Tcp(addr) => {
                let connect = move |_: Isolation| -> Opening {
                    Box::pin(async move {
                        let stream = TcpStream::connect(addr)
                            .await
                            .context("cannot connect to the proxy")?;
                        stream.set_nodelay(true)?;
                        let (r, w) = stream.into_split();
                        Ok((Box::new(r) as Reader, Box::new(w) as Writer))
                    })
                };
                // Calls come over the connection we register on when the
                // registrar keeps flows (`;ob`, privasip does); others
                // connect to our Contact's port, where we listen too.
                cfg.outbound = true;
                let incoming = listen_tcp(local).await?;
                let proxy = connect(Isolation::Shared).await?;
                (
                    Wire::Streams(Streams::new(
                        proxy,
                        Some(incoming),
                        Some(Box::new(connect)),
                        false,
                    )),
                    PROXY_STREAM,
                )
            }
            ProxyAt::Tor(host, port) => {
                let t = tor.as_ref().context("[tor]")?;
                let backend = crate::tor::backend(t, &config_path).await?;
                let service = crate::tor::onion_service(t, &config_path, backend.as_ref()).await?;
                // Behind Tor our Contact and Via name our onion service.
                // Without one, calls come over the stream we register on:
                // our Contact names a random, unresolvable host the proxy
                // binds to that stream (`;ob`).
                cfg.local = match &service {
                    Some(s) => format!("{}:{}", s.address, s.port),
                    None => {
                        cfg.outbound = true;
                        privasip_ua::flow_host(&mut OsRng)
                    }
                };
                let connect = move |isolation: Isolation| -> Opening {
                    let backend = backend.clone();
                    let host = host.clone();
                    Box::pin(async move {
                        let stream = backend
                            .connect(&host, port, isolation)
                            .await
                            .context("cannot reach the proxy through Tor")?;
                        let (r, w) = stream.into_split();
                        Ok((Box::new(r) as Reader, Box::new(w) as Writer))
                    })
                };
                let proxy = connect(Isolation::Shared).await?;
                let incoming = service.map(|s| s.incoming);
                let per_call = t.per_call();
                (
                    Wire::Streams(Streams::new(
                        proxy,
                        incoming,
                        Some(Box::new(connect)),
                        per_call,
                    )),
                    PROXY_STREAM,
                )
            }
        };
        // The trace holds Digest responses (enough for an offline
        // password guess): created private, never readable by others.
        let trace = match &args.trace {
            Some(p) => Some(
                std::os::unix::fs::OpenOptionsExt::mode(
                    std::fs::OpenOptions::new().create(true).append(true),
                    0o600,
                )
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
            ),
            None => None,
        };
        let mut agent = Agent {
            ua: Ua::new(cfg, peer),
            aes,
            registered: false,
            wire,
            trace,
        };
        match &args.action {
            Action::Register => {
                let e = agent.register().await?;
                println!("registered for {e} s");
                Ok(())
            }
            Action::Listen { duration } => {
                let e = agent.register().await?;
                eprintln!("registered for {e} s; answering calls (Ctrl-C stops)");
                let deadline = duration.map(|s| Instant::now() + Duration::from_secs_f64(s));
                agent
                    .run_until(deadline, |_, ev| {
                        match ev {
                            UaEvent::Incoming { call, caller } => {
                                println!("call {}: incoming from {caller}", call.0);
                            }
                            UaEvent::Ended { call } => println!("call {}: ended", call.0),
                            UaEvent::Failed { call, status } => {
                                println!("call {}: failed {status}", call.0);
                            }
                            UaEvent::Registered { expires } => {
                                eprintln!("registration refreshed for {expires} s");
                            }
                            UaEvent::RegistrationFailed { status } => {
                                eprintln!("registration refresh failed: {status}");
                            }
                            _ => {}
                        }
                        false
                    })
                    .await?;
                agent.unregister().await?;
                eprintln!("unregistered");
                Ok(())
            }
            Action::Call {
                target,
                count,
                interval,
                hold,
                cancel_after,
                register,
                json,
            } => {
                if *register {
                    agent.register().await?;
                }
                let mut all_ok = true;
                for n in 1..=*count {
                    let rec = one_call(&mut agent, target, *hold, *cancel_after).await?;
                    all_ok &=
                        rec.answered_ms.is_some() || (rec.cancelled && rec.status == Some(487));
                    report(n, &rec, *json);
                    if n < *count && *interval > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(*interval)).await;
                    }
                }
                agent.unregister().await?;
                if !all_ok {
                    bail!("not every call was answered");
                }
                Ok(())
            }
        }
    })
}

async fn one_call(
    agent: &mut Agent,
    target: &str,
    hold: f64,
    cancel_after: Option<f64>,
) -> Result<Record> {
    let link = agent.wire.call_link().await?;
    let rec = call_on(agent, link, target, hold, cancel_after).await;
    if let Some(link) = link {
        agent.wire.close(link);
    }
    rec
}

/// One call, its requests sent over `link` (or the proxy's usual one).
async fn call_on(
    agent: &mut Agent,
    link: Option<Link>,
    target: &str,
    hold: f64,
    cancel_after: Option<f64>,
) -> Result<Record> {
    let sent = Instant::now();
    let call: CallId = match link {
        Some(l) => agent.ua.call_via(sent, target, l, &mut OsRng)?,
        None => agent.ua.call(sent, target, &mut OsRng)?,
    };
    let mut rec = Record::default();
    let give_up = sent + Duration::from_secs(60);
    let cancel_at = cancel_after.map(|s| (sent + Duration::from_secs_f64(s)).min(give_up));
    let mut on_event = |at: Instant, ev: UaEvent| match ev {
        UaEvent::Response { call: c, status } if c == call => {
            match status {
                100 => rec.trying_ms = rec.trying_ms.or(Some(ms(sent, at))),
                180 | 183 => rec.ringing_ms = rec.ringing_ms.or(Some(ms(sent, at))),
                s if s >= 200 => rec.status = Some(s),
                _ => {}
            }
            false
        }
        UaEvent::Answered { call: c } if c == call => {
            rec.answered_ms = Some(ms(sent, at));
            true
        }
        UaEvent::Failed { call: c, status } if c == call => {
            rec.status = Some(status);
            true
        }
        _ => false,
    };
    let decided = agent
        .run_until(Some(cancel_at.unwrap_or(give_up)), &mut on_event)
        .await?;
    let cancelled = !decided && cancel_at.is_some();
    if cancelled {
        // CANCEL now (or at the first provisional response); the INVITE
        // then ends with 487, or, if the answer crossed the CANCEL, the
        // user agent hangs up by itself.
        agent.ua.hangup(Instant::now(), call, &mut OsRng)?;
        agent
            .run_until(
                Some(Instant::now() + Duration::from_secs(40)),
                &mut on_event,
            )
            .await?;
    }
    rec.cancelled = cancelled;
    if cancelled {
        return Ok(rec);
    }
    if rec.answered_ms.is_some() {
        if hold > 0.0 {
            let until = Some(Instant::now() + Duration::from_secs_f64(hold));
            agent.run_until(until, |_, _| false).await?;
        }
        agent.ua.hangup(Instant::now(), call, &mut OsRng)?;
        let until = Some(Instant::now() + Duration::from_secs(35));
        agent
            .run_until(until, |_, ev| {
                if ev == (UaEvent::Ended { call }) {
                    rec.ended = true;
                    return true;
                }
                false
            })
            .await?;
    }
    Ok(rec)
}

fn report(n: usize, r: &Record, json: bool) {
    let opt = |v: Option<f64>| v.map_or("null".to_owned(), |x| format!("{x:.3}"));
    let outcome = match (r.answered_ms, r.status) {
        (Some(_), _) if r.ended => "answered",
        (Some(_), _) if r.cancelled => "answered-despite-cancel",
        (Some(_), _) => "answered-no-bye",
        (None, Some(487)) if r.cancelled => "cancelled",
        (None, Some(_)) => "failed",
        (None, None) => "no-answer",
    };
    if json {
        println!(
            "{{\"call\":{n},\"invite_sent_ms\":0,\"trying_ms\":{},\"ringing_ms\":{},\"answered_ms\":{},\"status\":{},\"outcome\":\"{outcome}\"}}",
            opt(r.trying_ms),
            opt(r.ringing_ms),
            opt(r.answered_ms),
            r.status.map_or("null".to_owned(), |s| s.to_string()),
        );
    } else {
        let part = |name: &str, v: Option<f64>| v.map(|x| format!("{name} {x:.1} ms"));
        let parts: Vec<String> = [
            part("100", r.trying_ms),
            part("180", r.ringing_ms),
            part("200", r.answered_ms),
        ]
        .into_iter()
        .flatten()
        .collect();
        println!(
            "call {n}: {outcome}{}{}",
            r.status.map_or(String::new(), |s| format!(" ({s})")),
            if parts.is_empty() {
                String::new()
            } else {
                format!(", {}", parts.join(", "))
            }
        );
    }
}
