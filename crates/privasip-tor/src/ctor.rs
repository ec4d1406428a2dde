//! The C tor daemon as a backend: SOCKS5 for streams, the control port
//! for onion services.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::control::ControlConn;
use crate::{
    BoxFuture, Isolation, OnionService, OnionSpec, Sensitive, TorBackend, TorError, TorStream,
};

/// How long a new onion service may take to publish its descriptor.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the daemon listens, and where our onion keys live.
#[derive(Clone, Debug)]
pub struct CTorConfig {
    /// Its `SocksPort` (configured with `IsolateSOCKSAuth`).
    pub socks: SocketAddr,
    /// Its `ControlPort` (with `CookieAuthentication 1`).
    pub control: SocketAddr,
    /// Directory for onion service keys (created 0700; keys 0600).
    pub key_dir: PathBuf,
}

/// The C tor daemon backend.
pub struct CTor {
    cfg: CTorConfig,
    /// Random per process, so fresh-circuit usernames never repeat across
    /// restarts (tor would otherwise reuse a circuit it still has).
    session: u64,
    next: AtomicU64,
    /// When NEWNYM was last sent.
    last_newnym: std::sync::Mutex<Option<std::time::Instant>>,
}

/// tor itself delays NEWNYMs closer than 10 s apart.
const NEWNYM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl CTor {
    /// A backend for the daemon `cfg` describes (nothing is opened yet).
    pub fn new(cfg: CTorConfig) -> Self {
        CTor {
            cfg,
            session: rand_core::RngCore::next_u64(&mut rand_core::OsRng),
            next: AtomicU64::new(0),
            last_newnym: std::sync::Mutex::new(None),
        }
    }

    /// A new authenticated control connection (for checks and tests:
    /// `GETINFO circuit-status`, `stream-status`, ...).
    pub async fn control(&self) -> Result<ControlConn, TorError> {
        ControlConn::connect(self.cfg.control)
            .await
            .map_err(|e| TorError::Backend(e.to_string()))
    }

    /// The SOCKS username for an isolation choice: tor with
    /// `IsolateSOCKSAuth` gives each distinct username its own circuits.
    fn username(&self, isolation: Isolation) -> String {
        match isolation {
            Isolation::Shared => format!("privasip-{:x}-shared", self.session),
            Isolation::Group(g) => format!("privasip-{:x}-group-{g}", self.session),
            Isolation::Fresh => format!(
                "privasip-{:x}-fresh-{}",
                self.session,
                self.next.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    async fn open(&self, host: &str, port: u16, iso: Isolation) -> Result<TorStream, TorError> {
        let user = self.username(iso);
        let s = crate::socks5_connect(self.cfg.socks, host, port, &user, "privasip")
            .await
            .map_err(|e| match e {
                crate::SocksError::Refused(_) => TorError::Connect(Box::new(e)),
                other => TorError::Backend(other.to_string()),
            })?;
        Ok(TorStream::from_tcp(s))
    }

    /// `SIGNAL NEWNYM`, at most once per [`NEWNYM_EVERY`]: the daemon
    /// keeps one onion-service client cache for every isolation (so a
    /// fresh one does not start over), and NEWNYM purges it: descriptors,
    /// the introduction points it saw fail, and the record of which
    /// directories it asked in the last 15 minutes (which otherwise keeps
    /// it from asking them again for a new descriptor). New streams get
    /// new circuits; streams already open keep theirs.
    async fn newnym(&self) {
        {
            let mut last = self.last_newnym.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < NEWNYM_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let sent = match ControlConn::connect(self.cfg.control).await {
            Ok(mut ctl) => ctl.command("SIGNAL NEWNYM").await.map(|_| ()),
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => tracing::info!("asked tor to forget its onion-service state (NEWNYM)"),
            Err(e) => tracing::debug!("NEWNYM failed: {e}"),
        }
    }

    async fn host(&self, spec: OnionSpec) -> Result<OnionService, TorError> {
        let local = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local_port = local.local_addr()?.port();
        let (ctl, id) = add_onion(&self.cfg, &spec, local_port).await?;
        let (tx, incoming) = mpsc::channel::<TorStream>(64);
        let port = spec.port;
        tokio::spawn(serve(self.cfg.clone(), spec, ctl, (local, local_port), tx));
        Ok(OnionService {
            address: Sensitive::new(format!("{id}.onion")),
            port,
            incoming,
        })
    }
}

/// Adds our onion service to tor, forwarding its port to `local_port`,
/// with the key in the key directory (a new one, saved, the first time),
/// and waits until its descriptor is published. The service lives as
/// long as the returned control connection (ADD_ONION without Detach).
async fn add_onion(
    cfg: &CTorConfig,
    spec: &OnionSpec,
    local_port: u16,
) -> Result<(ControlConn, String), TorError> {
    let key = onion_key(cfg, &spec.nickname)?;
    let mut ctl = ControlConn::connect(cfg.control)
        .await
        .map_err(|e| TorError::Backend(e.to_string()))?;
    let err = |e: crate::ControlError| TorError::Onion(e.to_string());
    ctl.command("SETEVENTS HS_DESC").await.map_err(err)?;
    // The command and the reply carry the private key: both are wiped
    // when done with.
    // Proof-of-work at the introduction point (proposal 327): costs
    // clients nothing until an introduction flood makes tor ask for
    // effort, then puts real clients ahead of the flood.
    // A circuit that asks for more than MAX_STREAMS_PER_CIRCUIT
    // streams is closed: tor does not tell us which circuit a stream
    // rides, so the proxy budgets each stream, and this bounds how
    // many budgets one circuit can hold.
    let command = Zeroizing::new(format!(
        "ADD_ONION {} Flags=MaxStreamsCloseCircuit MaxStreams={} \
         Port={},127.0.0.1:{local_port}{}",
        key.as_ref().map_or("NEW:ED25519-V3", |k| k.as_str()),
        crate::MAX_STREAMS_PER_CIRCUIT,
        spec.port,
        if spec.pow {
            " PoWDefensesEnabled=1"
        } else {
            ""
        }
    ));
    let mut reply = ctl.command(&command).await.map_err(err)?;
    drop(command);
    let id = reply
        .value("ServiceID")
        .ok_or_else(|| TorError::Onion("ADD_ONION gave no ServiceID".into()))?
        .to_owned();
    if key.is_none() {
        let pk = reply
            .value("PrivateKey")
            .ok_or_else(|| TorError::Onion("ADD_ONION gave no private key".into()))?;
        save_key(cfg, &spec.nickname, pk)?;
    }
    for line in &mut reply.lines {
        zeroize::Zeroize::zeroize(line);
    }
    // Reachable once one HSDir holds the descriptor.
    let published = async {
        loop {
            let ev = ctl.next_event().await.map_err(err)?;
            let text = ev.lines.join(" ");
            if text.starts_with("HS_DESC UPLOADED ") && text.contains(&id) {
                return Ok::<(), TorError>(());
            }
        }
    };
    tokio::time::timeout(PUBLISH_TIMEOUT, published)
        .await
        .map_err(|_| TorError::Timeout("publishing the onion service descriptor"))??;
    let _ = ctl.command("SETEVENTS").await;
    Ok((ctl, id))
}

/// Hands the streams tor forwards to `local` (on `local_port`) over to
/// `tx`, until its
/// receiver goes. If tor goes (its control connection closes: the
/// daemon died or restarted), the service went with it: it is added
/// again, same key and port, as soon as tor answers, so the service
/// comes back by itself.
async fn serve(
    cfg: CTorConfig,
    spec: OnionSpec,
    mut ctl: ControlConn,
    (local, local_port): (TcpListener, u16),
    tx: mpsc::Sender<TorStream>,
) {
    loop {
        tokio::select! {
            () = tx.closed() => return,
            r = local.accept() => {
                let Ok((s, from)) = r else { continue };
                // Only tor, from loopback, may hand us streams.
                if !from.ip().is_loopback() {
                    continue;
                }
                if tx.send(TorStream::from_tcp(s)).await.is_err() {
                    return;
                }
            }
            // Events still queued from the publication are of no
            // interest; an error is the connection's end.
            r = ctl.next_event() => {
                if r.is_ok() {
                    continue;
                }
                tracing::warn!("the tor daemon went away, and the onion service with it; adding it again once tor is back");
                let again = async {
                    let mut pause = REPUBLISH_PAUSE.0;
                    loop {
                        match add_onion(&cfg, &spec, local_port).await {
                            Ok((c, _)) => return c,
                            Err(e) => {
                                tracing::info!("the onion service is not back yet ({e}); again in {pause:?}");
                                tokio::time::sleep(pause).await;
                                pause = (pause * 2).min(REPUBLISH_PAUSE.1);
                            }
                        }
                    }
                };
                tokio::select! {
                    () = tx.closed() => return,
                    c = again => {
                        ctl = c;
                        tracing::info!("the onion service is published again");
                    }
                }
            }
        }
    }
}

/// After tor went away: the first and the longest pause between attempts
/// to add the onion service again.
const REPUBLISH_PAUSE: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(8));

fn key_path(cfg: &CTorConfig, nickname: &str) -> Result<PathBuf, TorError> {
    if nickname.is_empty()
        || !nickname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(TorError::Onion(format!(
            "nickname {nickname:?}: use letters, digits, - and _"
        )));
    }
    Ok(cfg.key_dir.join(format!("{nickname}.ctor-onion-key")))
}

fn onion_key(cfg: &CTorConfig, nickname: &str) -> Result<Option<Zeroizing<String>>, TorError> {
    let path = key_path(cfg, nickname)?;
    match std::fs::read_to_string(&path) {
        Ok(k) => Ok(Some(Zeroizing::new(k.trim().to_owned()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn save_key(cfg: &CTorConfig, nickname: &str, key: &str) -> Result<(), TorError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.key_dir)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_path(cfg, nickname)?)?;
    f.write_all(key.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

impl TorBackend for CTor {
    fn name(&self) -> &'static str {
        "c-tor"
    }

    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        isolation: Isolation,
    ) -> BoxFuture<'a, Result<TorStream, TorError>> {
        Box::pin(self.open(host, port, isolation))
    }

    fn host_onion(&self, spec: OnionSpec) -> BoxFuture<'_, Result<OnionService, TorError>> {
        Box::pin(self.host(spec))
    }

    fn forget_onion_state(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.newnym())
    }
}
